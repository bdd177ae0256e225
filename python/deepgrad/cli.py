"""The ``deepgrad`` command line (also ``python -m deepgrad``).

    deepgrad study                       the classic vanishing-gradient experiment (a few minutes)
    deepgrad study --activations relu tanh --inits auto --depths 10 30 --steps 200
    deepgrad info                        how this deepgrad was built
"""
from __future__ import annotations

import argparse
import sys

__all__ = ["main", "build_parser"]


def _positive_int(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}")
    return v


def _nonnegative_int(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {s!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {s!r}")
    return v


def _positive_float(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {s!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {s!r}")
    return v


def _yes_no(s: str) -> bool:
    v = s.lower()
    if v in ("yes", "true", "1", "on"):
        return True
    if v in ("no", "false", "0", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected yes or no, got {s!r}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="deepgrad", description="deepgrad: see and beat vanishing "
                                "and exploding gradients.")
    sub = p.add_subparsers(dest="command")
    s = sub.add_parser("study", help="run the vanishing/exploding gradient study",
                       description="Train deep MLPs (and RNN vs LSTM on the adding problem) with a "
                       "GradientMonitor attached; print a summary table and write a report folder. "
                       "With no options: depth-20 width-64 MLPs on spirals comparing sigmoid + "
                       "small normal init, tanh + Xavier, ReLU + He, LeakyReLU + He, sigmoid + "
                       "batch norm and sigmoid + residual, plus RNN vs LSTM. Rerunning the same "
                       "command resumes an interrupted study.",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    s.add_argument("mode", nargs="?", choices=["classic", "phase"], default="classic",
                   help="classic: the study grid below; phase: the trainability phase diagram "
                        "of --activation over --sigma-w x --sigma-b x --depths (mean-field "
                        "init, the 6 xi_c line drawn over it)")
    s.add_argument("--depths", type=_positive_int, nargs="+", default=None,
                   help="MLP depths (layers); default 20, phase: 10 20 50 100")
    s.add_argument("--widths", type=_positive_int, nargs="+", default=None,
                   help="MLP widths; default 64, phase: 32")
    s.add_argument("--activation", default="tanh", help="phase: the activation")
    s.add_argument("--sigma-w", default="0.5:4:0.25",
                   help="phase: sigma_w^2 values, START:STOP:STEP or one number")
    s.add_argument("--sigma-b", default="0.05",
                   help="phase: sigma_b^2 values, START:STOP:STEP or one number")
    s.add_argument("--activations", nargs="+", default=None,
                   help="activations for a custom grid (e.g. sigmoid tanh relu leaky_relu)")
    s.add_argument("--inits", nargs="+", default=None,
                   help="initialisations for a custom grid (auto, he, xavier, xavier_normal, "
                   "normal, lecun, orthogonal, ...); auto = He for the ReLU family, else Xavier")
    s.add_argument("--norm", nargs="+", choices=["none", "batch"], default=None,
                   help="normalisation variants for a custom grid")
    s.add_argument("--residual", type=_yes_no, nargs="+", default=None,
                   help="residual variants for a custom grid (yes/no)")
    s.add_argument("--optimizer", default="adam", choices=["adam", "adamw", "sgd", "rmsprop"])
    s.add_argument("--lr", type=_positive_float, default=None,
                   help="MLP learning rate; default 1e-3, phase: 1e-4 (deep nets at the edge "
                        "of chaos need the smaller step)")
    s.add_argument("--steps", type=_positive_int, default=None,
                   help="MLP training steps; default 1000, phase: 500")
    s.add_argument("--batch-size", type=_positive_int, default=64)
    s.add_argument("--dataset", default="spirals",
                   help="spirals, moons, circles, gaussian_mixture, xor, or a .npz (X, y) / .csv "
                   "(label in the last column) file")
    s.add_argument("--seed", type=int, default=0,
                   help="random seed of data, initialisation and batches (0 to 2**32 - 1)")
    s.add_argument("--device", default="cpu", help="cpu or cuda")
    s.add_argument("--out", default="deepgrad-study", help="report folder")
    s.add_argument("--no-rnn", dest="rnn", action="store_false",
                   help="skip the RNN vs LSTM adding-problem runs")
    s.add_argument("--seq-len", type=_positive_int, default=50, help="adding problem length T")
    s.add_argument("--hidden", type=_positive_int, default=32, help="recurrent hidden units")
    s.add_argument("--rnn-steps", type=_positive_int, default=400, help="recurrent training steps")
    s.add_argument("--rnn-lr", type=_positive_float, default=0.02, help="recurrent learning rate")
    s.add_argument("--every", type=_nonnegative_int, default=0,
                   help="record gradient flow every k steps (0: about 25 records per run)")
    s.add_argument("--fresh", action="store_true", help="ignore finished runs in --out and start over")
    s.add_argument("--no-plots", dest="plots", action="store_false", help="skip the PNG plots")
    s.add_argument("--jobs", type=_positive_int, default=None,
                   help="run the grid on N local worker processes (Dask; pip install "
                        "'deepgrad[distributed]')")
    s.add_argument("--scheduler", default=None,
                   help="run the grid on a Dask cluster: tcp://HOST:PORT, or auto (a local "
                        "cluster with Dask's defaults)")
    s.add_argument("--framework", choices=["deepgrad", "torch"], default="deepgrad",
                   help="train the runs as deepgrad models, or as the equivalent torch.nn "
                        "models (same initial weights) watched by deepgrad's monitor; the "
                        "report goes to deepgrad-study-torch/ unless --out is given")
    s.add_argument("--theory", action="store_true",
                   help="compare each MLP run at initialisation with mean-field theory: the "
                        "predicted per-layer backward-signal ratio in the summary and dashed "
                        "on flow_init.png")
    sub.add_parser("info", help="print how this deepgrad was built")
    return p


def _study(args) -> int:
    from .study import build_grid, classic_grid, run_study
    if args.device != "cpu":
        from .backend import get_backend
        try:
            get_backend(args.device)
        except (RuntimeError, ValueError) as e:
            print(f"deepgrad study: {e}", file=sys.stderr)
            return 2
    if args.dataset.endswith((".npz", ".csv")):
        import os
        if not os.path.isfile(args.dataset):
            print(f"deepgrad study: no such dataset file {args.dataset!r}", file=sys.stderr)
            return 2
    if args.mode == "phase":
        return _phase(args)
    args.depths = args.depths or [20]
    args.widths = args.widths or [64]
    args.steps = args.steps or 1000
    args.lr = args.lr or 1e-3
    if args.framework == "torch" and args.out == "deepgrad-study":
        args.out = "deepgrad-study-torch"
    common = dict(framework=args.framework, optimizer=args.optimizer, lr=args.lr, steps=args.steps,
                  batch_size=args.batch_size, dataset=args.dataset, seed=args.seed,
                  device=args.device, seq_len=args.seq_len, hidden=args.hidden,
                  every=args.every, rnn_steps=args.rnn_steps, rnn_lr=args.rnn_lr)
    custom = any(v is not None for v in (args.activations, args.inits, args.norm, args.residual))
    if custom:
        configs = build_grid(args.depths, args.widths, args.activations or ["sigmoid"],
                             args.inits or ["auto"], args.norm or ["none"],
                             args.residual or [False], rnn=args.rnn, **common)
    else:
        configs = classic_grid(args.depths, args.widths, rnn=args.rnn, **common)
    def go(client):
        run_study(configs, args.out, resume=not args.fresh, plots=args.plots,
                  theory=args.theory, client=client)
    return _run_guarded("deepgrad study", args, configs, args.out, go)


def _phase(args) -> int:
    from .phase import parse_range, phase_grid, run_phase
    out = args.out if args.out != "deepgrad-study" else "deepgrad-phase"
    try:
        configs = phase_grid(args.activation, parse_range(args.sigma_w, "--sigma-w"),
                             parse_range(args.sigma_b, "--sigma-b"),
                             args.depths or [10, 20, 50, 100], (args.widths or [32])[0],
                             args.steps or 500, lr=args.lr or 1e-4, seed=args.seed,
                             dataset=args.dataset, batch_size=args.batch_size,
                             device=args.device)
    except ValueError as e:
        print(f"deepgrad study phase: ValueError: {e}", file=sys.stderr)
        return 2

    def go(client):
        run_phase(configs, out, args.activation, resume=not args.fresh, plots=args.plots,
                  client=client)
    return _run_guarded("deepgrad study phase", args, configs, out, go)


def _run_guarded(name: str, args, configs, out: str, go) -> int:
    """Validate, start a Dask client when --jobs/--scheduler ask for one, run ``go(client)``,
    and turn errors into a message and exit status 2 (the finished runs are saved: rerunning
    resumes); the client and its cluster are always closed."""
    from .study import check_cluster_args, make_client, validate
    client = cluster = None
    try:
        check_cluster_args(args.jobs, args.scheduler)
        validate(configs, out)                   # before a cluster is started
        if args.jobs is not None or args.scheduler is not None:
            client, cluster = make_client(args.jobs, args.scheduler)
        go(client)
    except KeyboardInterrupt:
        return 130
    except ImportError as e:
        print(f"{name}: {e}", file=sys.stderr)
        return 2
    except (ValueError, TypeError, NotImplementedError, RuntimeError, OSError) as e:
        print(f"{name}: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    finally:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()
    return 0


def main(argv=None) -> int:
    """Entry point of the ``deepgrad`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else list(argv))
    if args.command == "study":
        return _study(args)
    if args.command == "info":
        from .runtime import build_info
        for k, v in build_info().items():
            print(f"{k:20s} {v}")
        return 0
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
