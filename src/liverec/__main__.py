"""`python -m liverec ...` is the `liverec` command (torchrun runs workers as `-m liverec train ...`)."""

from liverec.cli import main

main()
