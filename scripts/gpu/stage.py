#!/usr/bin/env python3
"""Stage Python packages (vLLM and the project's own dependencies) for an offline GPU host.

The GPU host has CUDA, PyTorch and many scientific packages preinstalled (see
device-freeze.txt beside this file) but reaches no package registry, and each
command sent to it may carry at most 64 MiB.  This script, run on a machine that
does reach the registry:

  1. resolves the requirements for CPython 3.12 on x86_64 Linux with uv,
     leaving out torch/torchvision/torchaudio/triton and everything the host
     already has (by name) and a few large optional kernel packages;
  2. downloads the wheels (cached under ~/.cache/gpu-stage);
  3. repacks the vLLM wheel as tar.xz (280 MB -> 200 MB);
  4. adds model skeleton folders (config + tokenizer, no weights) if asked;
  5. splits everything into parts of --part-mb MB under OUT/p0, OUT/p1, ...,
     each holding receive.sh and install.sh as well.

Then send one command per part to the GPU host, carrying that part only:
    bash OUT/pK/receive.sh                      (for every K)
and finish, in the same or a later command, with
    bash /root/gpu-stage/install.sh && export PYTHONPATH=/opt/gpu-site:$PWD
The host keeps what it received while it stays warm between commands.

Usage: stage.py [-r REQUIREMENT]... [--req-file FILE] [--model DIR]... [--out DIR]
Example (from the repository root):
    python3 scripts/gpu/stage.py --req-file requirements-gpu.txt --model search_spaces/models/qwen3-vl-4b-instruct
A skeleton whose tokenizer is already packed (tokenizer.json.xz, as the project ships it) is sent as it is;
install.sh unpacks it on the host.
"""
import argparse, hashlib, os, pathlib, re, shutil, subprocess, sys, tarfile, zipfile

HERE = pathlib.Path(__file__).resolve().parent
CACHE = pathlib.Path(os.environ.get("GPU_STAGE_CACHE", pathlib.Path.home() / ".cache" / "gpu-stage"))
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux1_x86_64", "manylinux_2_5_x86_64", "manylinux_2_26_x86_64",
             "manylinux_2_31_x86_64", "manylinux_2_34_x86_64", "manylinux_2_35_x86_64"]
# Host-provided stack: never staged.
OVERRIDE_OUT = ["torch", "torchvision", "torchaudio", "triton"]
# Large optional kernel packages vLLM runs without on Hopper (FA3 and its own kernels are in its wheel).
SKIP = {"flashinfer-cubin", "tokenspeed-triton", "tokenspeed-mla", "nvidia-cutlass-dsl", "nvidia-cutlass-dsl-libs-base",
        "nvidia-cutlass-dsl-libs-cu13", "nvidia-nvvm", "nvidia-cuda-nvcc", "nvidia-cuda-tileiras", "nvidia-cuda-crt",
        "nvidia-cuda-cccl", "tilelang", "z3-solver", "humming-kernels", "quack-kernels", "fastapi-cloud-cli", "fastar",
        "rignore", "sentry-sdk", "supervisor"}
# Present on the host but needed in another version by vLLM 0.24: staged anyway.
FORCE = set()


def norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def run(cmd, quiet_pip=False, **kw):
    print("+", cmd if isinstance(cmd, str) else " ".join(map(str, cmd)), file=sys.stderr)
    if not quiet_pip:
        return subprocess.run(cmd, check=True, **kw)
    # pip repeats one harmless warning per package for this machine's index setup: keep the rest.
    p = subprocess.run(cmd, stderr=subprocess.PIPE, text=True, **kw)
    for line in p.stderr.splitlines():
        if "is ignored: it is neither a file nor a directory" not in line:
            print(line, file=sys.stderr)
    if p.returncode:
        raise subprocess.CalledProcessError(p.returncode, cmd)
    return p


def uv():
    found = shutil.which("uv")
    if found:
        return found
    venv = CACHE / "uvenv"
    if not (venv / "bin" / "uv").exists():
        run([sys.executable, "-m", "venv", str(venv)])
        run([str(venv / "bin" / "pip"), "install", "-q", "uv"])
    return str(venv / "bin" / "uv")


def host_packages():
    pkgs = {}
    for line in (HERE / "device-freeze.txt").read_text().splitlines():
        if "==" in line:
            n, v = line.split("==", 1)
            pkgs[norm(n)] = v.strip()
    return pkgs


def resolve(reqs, work):
    (work / "req.in").write_text("\n".join(reqs) + "\n")
    (work / "override.txt").write_text("".join(f'{p}; sys_platform == "never"\n' for p in OVERRIDE_OUT))
    run([uv(), "pip", "compile", str(work / "req.in"), "--override", str(work / "override.txt"),
         "--python-version", "3.12", "--python-platform", "x86_64-manylinux_2_28", "--no-header",
         "--no-annotate", "-q", "-o", str(work / "lock.txt")])
    pins = []
    for line in (work / "lock.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            n, v = line.split("==", 1)
            pins.append((norm(n), v.split(";")[0].strip()))
    return pins


def download(pins):
    wheels = CACHE / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    have = {norm(p.name.split("-")[0]) + "==" + p.name.split("-")[1]: p for p in wheels.glob("*.whl")}
    need = [f"{n}=={v}" for n, v in pins if f"{n}=={v}" not in {k.replace("_", "-") for k in have}]
    if need:
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version",
               "3.12", "--implementation", "cp", "-d", str(wheels)]
        for p in PLATFORMS:
            cmd += ["--platform", p]
        run(cmd + need, quiet_pip=True)
    out = []
    for n, v in pins:
        match = [p for p in wheels.glob("*.whl") if norm(p.name.split("-")[0]) == n and p.name.split("-")[1] == v]
        if not match:
            sys.exit(f"no wheel for {n}=={v}")
        out.append(match[0])
    return out


def repack(wheel):
    """A wheel is a zip; xz on its unpacked tree is ~28% smaller for vLLM's CUDA binaries."""
    target = CACHE / (wheel.stem + ".tar.xz")
    if not target.exists():
        tmp = CACHE / "repack"
        shutil.rmtree(tmp, ignore_errors=True)
        zipfile.ZipFile(wheel).extractall(tmp)
        run(f"tar cf - -C {tmp} . | xz -9 -T0 > {target}.tmp", shell=True)
        os.replace(f"{target}.tmp", target)
        shutil.rmtree(tmp)
    return target


RECEIVE = """#!/bin/bash
# Copy this part to /root/gpu-stage on the GPU host.
set -e
mkdir -p /root/gpu-stage
here=$(cd "$(dirname "$0")" && pwd)
cp "$here"/bundle.part* "$here"/install.sh /root/gpu-stage/
echo "received $(ls /root/gpu-stage/bundle.part* | wc -l) of {n} parts"
"""

INSTALL = """#!/bin/bash
# Unpack the staged bundle into /opt/gpu-site (packages) and /root/models (model skeletons).
set -e
S=/root/gpu-stage; T=/opt/gpu-site
have=$(ls $S/bundle.part* 2>/dev/null | wc -l)
[ "$have" = "{n}" ] || {{ echo "only $have of {n} parts received" >&2; exit 1; }}
if [ ! -f $T/.staged-{digest} ]; then
  rm -rf $S/u && mkdir -p $S/u $T /root/models
  cat $S/bundle.part* | tar x -C $S/u
  for x in $S/u/*.tar.xz; do [ -e "$x" ] && xz -dc -T0 "$x" | tar x -C $T; done
  ls $S/u/wheels/*.whl >/dev/null 2>&1 && python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target $T $S/u/wheels/*.whl 2>&1 | grep -vi warning || true
  [ -d $S/u/models ] && cp -r $S/u/models/. /root/models/
  for t in /root/models/*/tokenizer.json.xz; do [ -e "$t" ] && xz -df "$t"; done
  rm -rf $S/u; touch $T/.staged-{digest}
fi
echo "staged packages in $T; models: $(ls /root/models 2>/dev/null | tr '\\n' ' ')"
echo "use: export PYTHONPATH=$T:\\$PWD"
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-r", dest="reqs", action="append", default=[], help="a requirement, e.g. vllm==0.24.0")
    ap.add_argument("--req-file", action="append", default=[], help="a requirements file")
    ap.add_argument("--model", action="append", default=[], help="a model skeleton folder to send along")
    ap.add_argument("--out", default=".gpu-stage", help="output folder (keep it git-ignored)")
    ap.add_argument("--part-mb", type=int, default=50)
    a = ap.parse_args()
    reqs = list(a.reqs)
    for f in a.req_file:
        reqs += [l.split("#")[0].strip() for l in pathlib.Path(f).read_text().splitlines() if l.split("#")[0].strip()]
    if not reqs:
        reqs = ["vllm==0.24.0"]
    work = CACHE / "work"
    work.mkdir(parents=True, exist_ok=True)
    host = host_packages()
    pins = resolve(reqs, work)
    keep, skipped = [], []
    for n, v in pins:
        if n in SKIP or (n in host and n not in FORCE):
            known = n in host and host[n] not in (v, "unknown")
            skipped.append(f"{n}=={v}" + (f" (host {host[n]})" if known else ""))
        else:
            keep.append((n, v))
    print(f"staging {len(keep)} packages; {len(skipped)} left to the host or skipped", file=sys.stderr)
    other = [s for s in skipped if "(host" in s]
    if other:
        print("  left to the host although it has another version: " + ", ".join(other), file=sys.stderr)
    wheels = download(keep)
    bundle = work / "bundle"
    shutil.rmtree(bundle, ignore_errors=True)
    (bundle / "wheels").mkdir(parents=True)
    for w in wheels:
        if norm(w.name.split("-")[0]) == "vllm":
            shutil.copy(repack(w), bundle / "vllm.tar.xz")
        else:
            shutil.copy(w, bundle / "wheels" / w.name)
    for m in a.model:
        m = pathlib.Path(m).resolve()
        dst = bundle / "models" / m.name
        shutil.copytree(m, dst)
        tok = dst / "tokenizer.json"
        if tok.exists():
            run(["xz", "-9", "-T0", str(tok)])
    tarpath = work / "bundle.tar"
    with tarfile.open(tarpath, "w") as tf:
        for p in sorted(bundle.iterdir()):
            tf.add(p, arcname=p.name)
    size, part = tarpath.stat().st_size, a.part_mb * 1_000_000
    n = (size + part - 1) // part
    digest = hashlib.sha256(("\n".join(f"{a}=={b}" for a, b in keep) + "|" + ",".join(a.model)).encode()).hexdigest()[:12]
    out = pathlib.Path(a.out)
    shutil.rmtree(out, ignore_errors=True)
    with open(tarpath, "rb") as f:
        for k in range(n):
            d = out / f"p{k}"
            d.mkdir(parents=True)
            (d / f"bundle.part{k:02d}").write_bytes(f.read(part))
            (d / "receive.sh").write_text(RECEIVE.format(n=n))
            (d / "install.sh").write_text(INSTALL.format(n=n, digest=digest))
            for s in ("receive.sh", "install.sh"):
                (d / s).chmod(0o755)
    print(f"{n} parts of at most {a.part_mb} MB in {out}/ ({size / 1e6:.0f} MB in all).")
    print(f"Send, one command each, carrying only that part:")
    for k in range(n):
        print(f"  carry [\"{out}/p{k}\"]  command: bash {out}/p{k}/receive.sh")
    print(f"then: bash /root/gpu-stage/install.sh && export PYTHONPATH=/opt/gpu-site:$PWD")


if __name__ == "__main__":
    main()
