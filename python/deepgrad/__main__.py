"""`python -m deepgrad` prints build information; `python -m deepgrad study ...` runs the study."""
import sys


def _main() -> int:
    if len(sys.argv) > 1:
        from .cli import main
        return main(sys.argv[1:])
    from .runtime import build_info
    for k, v in build_info().items():
        print(f"{k:20s} {v}")
    return 0


if __name__ == "__main__":
    sys.exit(_main())
