"""What every pydarknet layer module offers besides `forward`."""
from __future__ import annotations

from torch import Tensor, nn


class DarknetLayer(nn.Module):
    """Base of all layer modules.

    `darknet_tensors()` lists the parameters and buffers in the order Darknet's weights files store
    them; reading and writing `.weights` both walk this one list, so they cannot drift apart.
    """

    def darknet_tensors(self) -> list[Tensor]:
        return []
