"""`python -m pydarknet.cli`: the form the torchrun relaunch uses."""
from . import main

main(prog_name="pydarknet")
