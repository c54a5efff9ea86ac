#!/usr/bin/env python3
"""PyTorch twins of optc's example networks, timed the way `./NET bench` is.

One process measures one network at one thread count and prints one line in
the format of optc's bench command, plus an `info:` line with the parameter
count and the forward multiply-adds per image:

    bench: net=resnet20 batch=128 threads=2 train_img_s=... infer_img_s=... peak_rss_mb=...
           infer_eager_img_s=... infer_frozen_img_s=...

Inference is timed twice: the eager model in eval mode, and the model traced,
frozen and optimised for inference (torch.jit.optimize_for_inference: BN
folded into the convs, oneDNN's fusions), checked against eager's logits;
infer_img_s is the faster of the two.
    info: net=resnet20 params=269722 madds=40551424

Run one network per process: ru_maxrss is a process-wide high-water mark, so a
second network in the same process would inherit the first one's peak.

Networks (the architectures of examples/resnet.opt, heavy_ball.opt and
densenet.opt):
  resnet20     pre-activation ResNet-20: x[k+1] = x[k] - block(x[k])
  hb20         heavy ball: x[k+1] = x[k] - block(x[k]) + beta*(x[k] - x[k-1])
  densenet40   DenseNet-BC k=12, depth 40
  densenet100  DenseNet-BC k=12, depth 100 (769,162 parameters)

The environment is used as it is: malloc tuning (MALLOC_*_) is the caller's
choice, and nothing here touches OPENBLAS_* or OMP_*. TORCH_BENCH_LAYOUT=
channels_last runs the model and its input in NHWC (oneDNN's own layout)
instead of the default NCHW.
"""

import argparse
import os
import resource
import statistics
import sys
import time
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F


def conv3x3(cin, cout, stride=1):
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


class Block(nn.Module):
    """grad(.) of the specs: BN-ReLU-conv3x3-BN-ReLU-conv3x3, no conv bias."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = conv3x3(cin, cout, stride)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = conv3x3(cout, cout)

    def forward(self, x):
        y = self.conv1(F.relu(self.bn1(x)))
        return self.conv2(F.relu(self.bn2(y)))


def pad_shortcut(x, cout, stride):
    """Option A: subsample by the stride, zero-pad the new channels."""
    if stride != 1:
        x = x[:, :, ::stride, ::stride]
    extra = cout - x.shape[1]
    if extra > 0:
        x = F.pad(x, (0, 0, 0, 0, 0, extra))
    return x


class Stage(nn.Module):
    """steps unrolled steps of gradient descent (beta None) or heavy ball.

    A reference before index 0 means x[0]; at a strided start every older
    state (here x[0] itself) passes through the pad shortcut."""

    def __init__(self, cin, cout, steps, stride, beta):
        super().__init__()
        self.cout, self.stride, self.beta = cout, stride, beta
        self.blocks = nn.ModuleList(
            Block(cin if k == 0 else cout, cout, stride if k == 0 else 1) for k in range(steps))

    def forward(self, x0):
        x = x0
        prev = None
        for k, block in enumerate(self.blocks):
            g = block(x)
            cur = pad_shortcut(x, self.cout, self.stride) if k == 0 else x
            nxt = cur - g
            if self.beta is not None:
                # x[k-1] = x[0] at k = 0, so the momentum term vanishes there
                # (optc may fold it away; PyTorch pays for it only from k = 1).
                if prev is not None:
                    nxt = nxt + self.beta * (cur - prev)
                prev = cur
            x = nxt
        return x


class ResNet(nn.Module):
    def __init__(self, beta=None, steps=3, widths=(16, 32, 64), classes=10):
        super().__init__()
        self.stem = conv3x3(3, widths[0])
        stages, cin = [], widths[0]
        for i, w in enumerate(widths):
            stages.append(Stage(cin, w, steps, 1 if i == 0 else 2, beta))
            cin = w
        self.stages = nn.Sequential(*stages)
        self.bn = nn.BatchNorm2d(cin)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        x = self.stages(self.stem(x))
        x = F.relu(self.bn(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class DenseLayer(nn.Module):
    """BN-ReLU-conv1x1(4k)-BN-ReLU-conv3x3(k); its output joins the concat."""

    def __init__(self, cin, k):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, 4 * k, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(4 * k)
        self.conv2 = conv3x3(4 * k, k)

    def forward(self, x):
        y = self.conv1(F.relu(self.bn1(x)))
        return torch.cat([x, self.conv2(F.relu(self.bn2(y)))], 1)


class Transition(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.bn = nn.BatchNorm2d(cin)
        self.conv = nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x):
        return F.avg_pool2d(self.conv(F.relu(self.bn(x))), 2)


class DenseNetBC(nn.Module):
    def __init__(self, depth, k=12, classes=10):
        super().__init__()
        n = (depth - 4) // 6
        c = 2 * k
        layers = [conv3x3(3, c)]
        for stage in range(3):
            for _ in range(n):
                layers.append(DenseLayer(c, k))
                c += k
            if stage < 2:
                layers.append(Transition(c, c // 2))
                c //= 2
        self.features = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(c)
        self.fc = nn.Linear(c, classes)

    def forward(self, x):
        x = F.relu(self.bn(self.features(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def init_like_optc(model):
    """optc's init rules: convolutions Kaiming-normal over fan-in (std
    sqrt(2/fan_in)); linear weight and bias uniform in +-1/sqrt(fan_in);
    BN gamma 1, beta 0. PyTorch's default conv init shrinks activations by
    about 6x per layer, which in eval mode (running statistics still near
    0/1) drives DenseNet's deep activations into denormals and makes
    inference 10x slower than training; matching optc's init avoids that
    and keeps the numbers the two run on alike."""
    for mod in model.modules():
        if isinstance(mod, nn.Conv2d):
            nn.init.kaiming_normal_(mod.weight, mode="fan_in", nonlinearity="relu")
        elif isinstance(mod, nn.Linear):
            bound = 1.0 / mod.in_features ** 0.5
            nn.init.uniform_(mod.weight, -bound, bound)
            nn.init.uniform_(mod.bias, -bound, bound)
    return model


NETS = {
    "resnet20": lambda: ResNet(),
    "hb20": lambda: ResNet(beta=0.9),
    "densenet40": lambda: DenseNetBC(40),
    "densenet100": lambda: DenseNetBC(100),
}


def count_madds(model, shape):
    """Forward multiply-adds per image of the convolutions and linear layers
    (batch-norm, ReLU, pooling and sums are not counted)."""
    total = [0]

    def conv_hook(mod, inp, out):
        kh, kw = mod.kernel_size
        total[0] += out[0].numel() * (mod.in_channels // mod.groups) * kh * kw

    def fc_hook(mod, inp, out):
        total[0] += mod.in_features * mod.out_features

    hooks = []
    for mod in model.modules():
        if isinstance(mod, nn.Conv2d):
            hooks.append(mod.register_forward_hook(conv_hook))
        elif isinstance(mod, nn.Linear):
            hooks.append(mod.register_forward_hook(fc_hook))
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, *shape))
    for h in hooks:
        h.remove()
    return total[0]


def timed(fn, warmup, iters, steps=None):
    """Median seconds of one call over iters calls after warmup calls; each
    call's seconds, in order, appended to steps when given."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    if steps is not None:
        steps.extend(times)
    return statistics.median(times)


def bench(name, batch, threads, warmup, iters, seed, channels_last=False, infer_iters=0,
          steps=False):
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    # Denormals cost ~100x on x86; flushing them is PyTorch at its best.
    torch.set_flush_denormal(True)
    model = init_like_optc(NETS[name]())
    shape = (3, 32, 32)
    params = sum(p.numel() for p in model.parameters())
    madds = count_madds(model, shape)
    x = torch.randn(batch, *shape)
    y = torch.randint(0, 10, (batch,))
    if channels_last:
        # NHWC: oneDNN's native layout on the CPU, no reorders around each conv
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    loss_fn = nn.CrossEntropyLoss()

    def train_step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()

    def infer_step():
        with torch.no_grad():
            model(x)

    infer_iters = infer_iters or iters
    s_train, s_infer = [], []
    model.train()
    t_train = timed(train_step, warmup, iters, s_train)
    model.eval()
    t_eager = timed(infer_step, warmup, infer_iters, s_infer)
    # PyTorch's own inference path as well: the traced model frozen and
    # optimised for inference (BN folded into the convs, oneDNN fusions);
    # the faster of the two is PyTorch's inference figure.
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
    t_frozen = float("inf")
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")     # the tracer's notes on the pad shortcut's shape test
            frozen = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(model, x)))
            ref, got = model(x), frozen(x)
            err = float((ref - got).abs().max() / ref.abs().max())
            if not err < 1e-4:
                raise RuntimeError(f"its logits differ from eager's by {err:.2e} (relative)")

            def frozen_step():
                with torch.no_grad():
                    frozen(x)
            s_frozen = []
            t_frozen = timed(frozen_step, warmup, infer_iters, s_frozen)
            if t_frozen < t_eager:
                s_infer = s_frozen
    except Exception as e:  # an older or trimmed PyTorch: eager only, said so
        print(f"note: frozen inference unavailable: {e}", file=sys.stderr)
    t_infer = min(t_eager, t_frozen)
    fz = f"{batch / t_frozen:.1f}" if t_frozen != float("inf") else "-"
    # peak RSS as of training and eager inference: the frozen copy's weights
    # would count against PyTorch in the memory column
    if steps:   # the steps of the inference figure kept (eager or frozen)
        print("steps: train_ms=" + ",".join(f"{1e3 * t:.2f}" for t in s_train)
              + " infer_ms=" + ",".join(f"{1e3 * t:.2f}" for t in s_infer))
    print(f"bench: net={name} batch={batch} threads={threads} "
          f"train_img_s={batch / t_train:.1f} infer_img_s={batch / t_infer:.1f} "
          f"peak_rss_mb={rss_mb:.1f} infer_eager_img_s={batch / t_eager:.1f} "
          f"infer_frozen_img_s={fz}")
    print(f"info: net={name} params={params} madds={madds} torch={torch.__version__}")
    sys.stdout.flush()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--net", choices=sorted(NETS), default="resnet20")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--iters", type=int, default=10, help="timed iterations (median)")
    ap.add_argument("--infer-iters", type=int, default=0,
                    help="timed inference forwards (median; 0: as many as --iters)")
    ap.add_argument("--steps", action="store_true",
                    help="also print every timed step's milliseconds, in order")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--info", action="store_true",
                    help="print only the info line (parameters, multiply-adds); no timing")
    a = ap.parse_args()
    if a.batch < 1 or a.threads < 1 or a.iters < 1 or a.warmup < 0 or a.infer_iters < 0:
        ap.error("--batch, --threads and --iters must be >= 1, --warmup and --infer-iters >= 0")
    if a.info:
        model = NETS[a.net]()
        params = sum(p.numel() for p in model.parameters())
        print(f"info: net={a.net} params={params} madds={count_madds(model, (3, 32, 32))} "
              f"torch={torch.__version__}")
        return
    layout = os.environ.get("TORCH_BENCH_LAYOUT", "")
    if layout not in ("", "nchw", "channels_last"):
        ap.error("TORCH_BENCH_LAYOUT must be nchw or channels_last")
    bench(a.net, a.batch, a.threads, a.warmup, a.iters, a.seed, layout == "channels_last",
          a.infer_iters, a.steps)


if __name__ == "__main__":
    main()
