"""Pretrained encoder weights: `python -m kaggle_tf.weights list | fetch`.

`list` prints every encoder, its default source (what
`encoder_weights="imagenet"` loads) and whether that is in the Hugging Face
cache (`HF_HUB_CACHE`). `fetch ENCODER|hf://REPO --out DIR` downloads
(with progress) through `huggingface_hub`, converts, and writes DIR:
`config.json`, the original weight file and `<encoder>.weights.h5`.
Upload DIR as a Kaggle dataset and give `model.encoder_weights=DIR` in an
offline kernel.

Weights that cannot be had (offline with nothing cached, unknown repo):
one line on stderr, exit status 1, nothing written.
"""

import argparse
import os
import sys


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m kaggle_tf.weights",
                                description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="encoders, default sources, cached or not")
    f = sub.add_parser("fetch", help="download + convert into a folder")
    f.add_argument("target", metavar="ENCODER|hf://REPO",
                   help="an encoder name (its default source) or a hub repo")
    f.add_argument("--out", required=True, help="the folder to write")
    f.add_argument("--encoder", default=None,
                   help="the encoder of an hf:// repo (default: from its "
                        "config.json)")
    f.add_argument("--channels", type=int, default=3,
                   help="input channels of the converted weights "
                        "(default: 3)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from kaggle_tf.models import pretrained

    try:
        if args.command == "list":
            rows = pretrained.listing()
            width = max(len(name) for name, _, _ in rows)
            for name, source, cached in rows:
                state = ("-" if source is None else
                         "cached" if cached else "not cached")
                print(f"{name:<{width}}  {source or '-':<42}  {state}")
            return 0
        if args.channels < 1:
            print(f"error: --channels must be positive. Received: "
                  f"{args.channels}", file=sys.stderr)
            return 2
        path = pretrained.fetch(args.target, args.out,
                                channels=args.channels, encoder=args.encoder)
    except pretrained.PretrainedWeightsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except ValueError as e:
        print(f"error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    print(f"wrote {args.out} ({os.path.basename(path)}); use "
          f"model.encoder_weights={args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
