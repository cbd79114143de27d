"""``python -m bench`` runs the same Hydra app as the ``fvbench`` command."""

from bench.cli import main

if __name__ == "__main__":
    main()
