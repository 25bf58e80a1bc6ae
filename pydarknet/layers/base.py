"""What every pydarknet layer module offers besides `forward`."""
from __future__ import annotations

from typing import TYPE_CHECKING

from torch import Tensor, nn

from ..registry import Shape

if TYPE_CHECKING:
    from ..network import Darknet


def dims(shape: Shape) -> str:
    """A map's size as Darknet's layer table prints it: `w x h x c`, each `%4d`."""
    return f"{shape.w:4d} x{shape.h:4d} x{shape.c:4d}"


class DarknetLayer(nn.Module):
    """Base of all layer modules.

    `darknet_tensors()` lists the parameters and buffers in the order Darknet's weights files store
    them; reading and writing `.weights` both walk this one list, so they cannot drift apart.
    `trained_tensors()` names the ones the optimizer updates, `summary_line()` is the layer's line
    of the layer table: a new layer type brings all three, and nothing outside it switches on its type.
    """

    clips_weights = False        # True: `clip=` of [net] bounds its `weights` after each update
    outputs_detections = False   # True: its output is detections (B, n, entries, H, W), not an image

    def darknet_tensors(self) -> list[Tensor]:
        return []

    def trained_tensors(self) -> dict[str, nn.Parameter]:
        """The tensors the optimizer updates, under Darknet's names: `weights`, `biases`, `scales`."""
        return {}

    def summary_line(self, net: Darknet, index: int, before: Shape) -> str:
        """This layer's line of the layer table after its `%5d ` index, as its `make_<kind>_layer` prints
        it; `net` is the network it is layer `index` of, `before` its input."""
        raise NotImplementedError(f"{type(self).__name__} has no summary_line: a Darknet layer must give its "
                                  f"line of the layer table")
