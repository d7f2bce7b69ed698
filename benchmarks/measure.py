"""Reference figures through the measurement core: the zoo models on their data, side by side.

python benchmarks/measure.py [--quick] [--out FILE.json]

- digits: CNN, ResNet and MLP trained from the zoo, timed interleaved at batch 1 and 256.
- STS-B dev: all-MiniLM-L6-v2 fp32 (mean pooling, max length 128), Spearman through ``ss.measure``
  (reference 0.867 on this machine), batch 128.
"""

from __future__ import annotations

import _common

import slimstack as ss


def main(argv=None) -> None:
    args = _common.parse_args("measure", __doc__.splitlines()[0], argv)
    train, val, test = (ss.datasets.load("digits", split=s) for s in ("train", "val", "test"))
    models = {
        "digits_cnn": ss.zoo.train(ss.zoo.digits_cnn(), train, epochs=15, val=val),
        "digits_resnet": ss.zoo.train(ss.zoo.digits_resnet(), train, epochs=8 if args.quick else 15, val=val),
        "digits_mlp": ss.zoo.train(ss.zoo.digits_mlp(), train, epochs=40, val=val),
    }
    rows = []
    for bs in (1, 256):
        c = ss.compare(models, test, batch_size=bs, threads=args.threads, runs=20 if args.quick else 50)
        for name, m in c.measurements.items():
            rows.append({**m.to_dict(), "name": f"{name} (batch {bs})", "dataset": "digits", "speedup": c.speedup(name)})
    dev = ss.datasets.load("stsb", split="test")
    if args.quick:
        dev = dev.head(500)
    m = ss.measure(ss.zoo.minilm(), dev, batch_size=128, threads=args.threads, runs=5 if args.quick else 10,
                   name="minilm fp32")
    rows.append({**m.to_dict(), "dataset": f"stsb dev ({len(dev)} pairs)", "speedup": 1.0})
    print(f"MiniLM fp32 STS-B dev Spearman {m.quality:.4f} (reference 0.867), {m.latency_ms:.0f} ms / batch 128")
    _common.write("measure", args, rows, summary=[
        f"MiniLM fp32 STS-B dev Spearman {m.quality:.4f} through ss.measure (issue 2 target 0.867 +/- 0.002"
        f"{'; quick run uses the first 500 pairs' if args.quick else ''})",
    ])


if __name__ == "__main__":
    main()
