"""`python -m pydarknet`."""
from .cli import main

main(prog_name="pydarknet")
