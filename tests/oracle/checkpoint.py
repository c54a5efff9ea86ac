"""A checkpoint of ./NET train loads into the emitted PyTorch module.

Builds NET (default hb20_fmnist: BN, pad shortcuts, heavy-ball sums), trains
it one short epoch on synthetic data, reads last.safetensors (a reader of a
few lines below), drops the momentum.* buffers and loads the rest with
load_state_dict(strict=True), into float32 and float64 copies of the module.
Then a batch written to a safetensors file (the writer below) goes through
./NET dump --weights CKPT --input FILE, and the module's eval logits must
match the double code's within TOL_DOUBLE and the float code's within
TOL_FLOAT (relative, max-norm), and the trained BN statistics must be
non-trivial (so eval mode really used them).
"""
import argparse
import json
import os
import struct
import subprocess
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import oracle  # noqa: E402

TOL_DOUBLE = oracle.TOL_DOUBLE
TOL_FLOAT = oracle.TOL_FLOAT


def st_read(path):
    """Tensors (F32 only) and metadata of a safetensors file."""
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    head = json.loads(blob[8:8 + n])
    meta = head.pop("__metadata__", {})
    data = blob[8 + n:]
    out = {}
    for name, e in head.items():
        assert e["dtype"] == "F32", (name, e["dtype"])
        b, end = e["data_offsets"]
        out[name] = torch.frombuffer(bytearray(data[b:end]), dtype=torch.float32).view(e["shape"])
    return out, meta


def st_write(path, tensors):
    """F32 tensors to a safetensors file."""
    head, blobs, off = {}, [], 0
    for name, t in tensors.items():
        v = t.detach().to(torch.float32).flatten().tolist()
        b = struct.pack("<%df" % len(v), *v)
        head[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(head).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def run(cmd):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        raise RuntimeError("%s failed (%d):\n%s" % (" ".join(cmd), r.returncode, r.stdout))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--optc", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--spec", default="examples/heavy_ball.opt")
    ap.add_argument("--net", default="hb20_fmnist")
    a = ap.parse_args()
    torch.set_num_threads(1)
    os.makedirs(a.work, exist_ok=True)
    prog = os.path.join(a.work, a.net)
    py = os.path.join(a.work, "net.py")
    run([a.optc, "emit", a.spec, "-n", a.net, "--pytorch", "-o", py])
    run([a.optc, "build", a.spec, "-n", a.net, "-o", prog])
    run([prog, "train", "--data", "synthetic", "--epochs", "1", "--limit", "128",
         "--test-limit", "32", "--batch", "32", "--threads", "1", "--seed", "5", "--quiet",
         "--out", os.path.join(a.work, "run")])
    ckpt = os.path.join(a.work, "run", "last.safetensors")
    tensors, _meta = st_read(ckpt)
    mod = oracle.load_module(py, a.net)
    mom = [k for k in tensors if k.startswith("momentum.")]
    state = {k: v for k, v in tensors.items() if not k.startswith("momentum.")}
    failed = []
    if not mom:
        failed.append("no momentum.* tensors in the checkpoint (names changed?)")
    m32 = mod.build()
    m32.load_state_dict(state, strict=True)
    m64 = mod.build().double()
    m64.load_state_dict(state, strict=True)
    if set(m64.state_dict()) != set(state):
        failed.append("state_dict keys differ from the checkpoint's")
    kinds = {n: k for n, _s, k, *_ in mod.TENSORS}
    moved = max((state[n] - (1.0 if kinds[n] == "bn_var" else 0.0)).abs().max().item()
                for n in state if kinds[n] in ("bn_mean", "bn_var"))
    if not moved > 1e-3:
        failed.append("BN running statistics untouched by training (%g)" % moved)

    g = torch.Generator().manual_seed(11)
    c, h, w = mod.INPUT
    x = torch.randn(3, c, h, w, generator=g)
    y = torch.randint(0, mod.CLASSES, (3,), generator=g)
    inp = os.path.join(a.work, "input.safetensors")
    st_write(inp, {"input": x, "labels": y.to(torch.float32)})
    out = os.path.join(a.work, "dump")
    run([prog, "dump", "--weights", ckpt, "--input", inp, "--out", out, "--threads", "1"])
    _m, t = oracle.load_dump(out)
    if not torch.equal(t["input"], x.double()) or not torch.equal(t["labels"], y.double()):
        failed.append("dump did not read the batch it was given")
    m64.eval()
    with torch.no_grad():
        e64 = m64(x.double())
    ed = oracle.rel(t["double.eval_logits"], e64)
    ef = oracle.rel(t["float.eval_logits"], e64)
    if not ed <= TOL_DOUBLE:
        failed.append("eval logits vs double code %.3e > %g" % (ed, TOL_DOUBLE))
    if not ef <= TOL_FLOAT:
        failed.append("eval logits vs float code %.3e > %g" % (ef, TOL_FLOAT))
    m32.eval()
    with torch.no_grad():
        e32 = m32(x)
    e3 = oracle.rel(e32, e64)
    if not e3 <= TOL_FLOAT:
        failed.append("float32 module vs float64 module %.3e > %g" % (e3, TOL_FLOAT))
    print("oracle: checkpoint %s: %s  (%d tensors + %d momentum, eval logits: double %.2e, "
          "float %.2e)" % (a.net, "FAIL " + "; ".join(failed) if failed else "ok",
                           len(state), len(mom), ed, ef))
    print("oracle: checkpoint: %d passed, %d failed, 0 skipped" % (0 if failed else 1,
                                                                   1 if failed else 0))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
