"""`python -m pydarknet.cli`: the form the torchrun relaunch uses."""
from .common import program

program(prog_name="pydarknet")
