"""`python -m pydarknet`."""
from .cli.common import program

program(prog_name="pydarknet")
