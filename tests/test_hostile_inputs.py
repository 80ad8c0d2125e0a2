"""Hostile and absurd input (issue 16), refused before it costs anything: exit 2, a message naming
the problem, no traceback, no MLflow database, no Ray, no sweep folder.

One table, grouped by class; each row runs `sweep run` in-process. Placeholders: `{data}` a copy
of the fake CIFAR-10 + MNIST (damaged per row), `{tmp}` the test's temp dir, `{web}` a local
HTTP server that answers /health but is not MLflow, `{plain}` one that answers 200 "OK" to
everything. Crafted CIFAR-10 pickles would create `{tmp}/pwned` if they ever ran.
"""
from __future__ import annotations

import os
import pickle
import shutil
import sqlite3
import time
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from fakedata import fake_cifar, fake_mnist  # noqa: F401
from refusal import assert_refused

EDGE = ["run", "edge-data-per-class", "--smoke"]
OVERFIT = ["run", "edge-overfit-small", "--smoke"]
HPO = ["run", "edge-hpo", "--smoke"]
CIFAR = ["run", "cifar10-param-efficiency", "--smoke", "--data-root", "{data}"]
MNIST = ["run", "mnist-mlp-lenet-resnet", "--smoke", "--data-root", "{data}"]
LOCAL = ["run", "object-localization", "--smoke"]
INF = "1e999"  # what a user types; Python parses it as inf

NON_FINITE = [
    ("lr-inf", EDGE + ["--set", f"lr={INF}"], ["lr=inf", "not a finite number"]),
    ("lr-minus-inf", EDGE + ["--set", f"lr=-{INF}"], ["lr", "-inf"]),
    ("lr-nan", EDGE + ["--set", "lr=nan"], ["lr='nan'", "expected float"]),
    ("grid-lr-inf", EDGE + ["--grid", f"lr=0.1,{INF}"], ["lr=inf", "not a finite number"]),
    ("momentum-inf", EDGE + ["--set", f"momentum={INF}"], ["momentum", "inf"]),
    ("weight-decay-inf", EDGE + ["--set", f"weight_decay={INF}"], ["weight_decay=inf", "not a finite"]),
    ("intensity-inf", EDGE + ["--set", f"max_edge_intensity={INF}"], ["max_edge_intensity=inf"]),
    ("background-minus-inf", EDGE + ["--set", f"min_background_intensity=-{INF}"],
     ["min_background_intensity=-inf"]),
    ("location-ratio-inf", EDGE + ["--set", f"possible_edge_location_ratio={INF}"], ["possible_edge_location_ratio=inf"]),
    ("hidden-dims-inf", OVERFIT + ["--set", f"hidden_dims=[50,{INF}]"], ["hidden_dims[1]=inf", "finite"]),
    ("sample-loguniform-inf", EDGE + ["--sample", f"lr=loguniform(1e-4,{INF})"], ["lr<1>=inf", "finite"]),
    ("sample-choice-inf", EDGE + ["--sample", f"lr=choice(0.1,{INF})"], ["lr<1>=inf", "finite"]),
    ("sample-uniform-inf", EDGE + ["--sample", f"momentum=uniform(0,{INF})"], ["upper bound"]),
    ("gpus-nan", EDGE + ["--gpus-per-trial", "nan"], ["--gpus-per-trial", "finite number, got 'nan'"]),
    ("gpus-inf", EDGE + ["--gpus-per-trial", "inf"], ["--gpus-per-trial", "finite number, got 'inf'"]),
    ("cpus-nan", EDGE + ["--cpus-per-trial", "nan"], ["--cpus-per-trial", "finite number, got 'nan'"]),
    ("cpus-inf", EDGE + ["--cpus-per-trial", "inf"], ["--cpus-per-trial", "finite number, got 'inf'"]),
    ("cpus-minus-inf", EDGE + ["--cpus-per-trial=-inf"], ["--cpus-per-trial", "finite number"]),
]

RANGES = [
    ("lr-huge", EDGE + ["--set", "lr=11"], ["lr=11", "above 10"]),
    ("epochs-huge", EDGE + ["--set", "epochs=1000000"], ["epochs=1000000", "above 100000"]),
    ("epochs-beyond-int64", EDGE + ["--set", "epochs=99999999999999999999999"], ["64-bit integer"]),
    ("weight-decay-huge", EDGE + ["--set", "weight_decay=5"], ["weight_decay=5", "above 1"]),
    ("batch-size-huge", EDGE + ["--set", "batch_size=100000000000"], ["batch_size=100000000000", "above"]),
    ("t-max-huge", EDGE + ["--set", "scheduler=cosine", "--set", "t_max=1000000"], ["t_max=1000000", "above"]),
    ("resolution-huge", EDGE + ["--set", "spatial_resolution=100000"], ["spatial_resolution=100000", "above"]),
    ("model-seed-negative", EDGE + ["--set", "model_seed=-1"], ["model_seed=-1", "[0, 2**32)"]),
    ("model-seed-too-big", EDGE + ["--set", "model_seed=4294967296"], ["model_seed=4294967296", "2**32"]),
    ("data-seed-negative", EDGE + ["--set", "data_seed=-5"], ["data_seed=-5", "2**32"]),
    ("seeds-beyond-int64", EDGE + ["--seeds", "99999999999999999999999"], ["--seeds", "out of range"]),
    ("num-samples-zero", HPO + ["--num-samples", "0"], ["--num-samples must be >= 1"]),
    ("valid-per-class-zero", EDGE + ["--set", "valid_per_class=0"], ["valid_per_class=0", ">= 1"]),
]

RESOURCES = [
    ("gpus-word", EDGE + ["--gpus-per-trial", "half"], ["expected a number, got 'half'"]),
    ("gpus-minus-inf", EDGE + ["--gpus-per-trial=-inf"], ["finite number"]),
    ("gpus-two-on-cpu-machine", EDGE + ["--gpus-per-trial", "2"], ["--gpus-per-trial 2", "GPUs"]),
    ("gpus-fraction-above-one", EDGE + ["--gpus-per-trial", "1.25"], ["[0, 1] or a whole number"]),
    ("cpus-negative", EDGE + ["--cpus-per-trial", "-1"], ["whole number >= 1, got -1"]),
    ("cpus-half", EDGE + ["--cpus-per-trial", "0.5"], ["whole number >= 1, got 0.5"]),
    ("cpus-billion", EDGE + ["--cpus-per-trial", "1e9"], ["--cpus-per-trial 1e+09", "CPUs"]),
    ("cpus-word", EDGE + ["--cpus-per-trial", "all"], ["expected a number, got 'all'"]),
    ("max-concurrent-negative", EDGE + ["--max-concurrent", "-3"], ["--max-concurrent must be >= 1"]),
    ("max-failures-negative", EDGE + ["--max-failures", "-2"], ["--max-failures must be >= 0"]),
    ("pack-zero", EDGE + ["--pack", "0"], ["--pack must be >= 1"]),
    ("max-concurrent-float", EDGE + ["--max-concurrent", "1.5"], ["invalid int value: '1.5'"]),
]

DEVICE = [
    ("device-cuda", EDGE + ["--set", "device=cuda"], ["device='cuda'", "no CUDA device"]),
    ("grid-device-cuda", EDGE + ["--grid", "device=cpu,cuda"], ["device='cuda'", "no CUDA device"]),
    ("sample-device-cuda", EDGE + ["--sample", "device=choice(cpu,cuda)"], ["device='cuda'", "no CUDA"]),
    ("device-cuda-zero-gpus", EDGE + ["--set", "device=cuda", "--gpus-per-trial", "0"],
     ["--gpus-per-trial 0", "would see no GPU"]),
    ("device-cuda-mnist", MNIST + ["--set", "device=cuda"], ["device='cuda'", "no CUDA device"]),
    ("device-cuda-localization", LOCAL + ["--set", "device=cuda"], ["device='cuda'", "no CUDA device"]),
    ("device-upper-case", EDGE + ["--set", "device=CUDA"], ["device='CUDA' not allowed"]),
    ("device-index", EDGE + ["--set", "device=cuda:0"], ["device='cuda:0' not allowed"]),
    ("device-gpu", EDGE + ["--set", "device=gpu"], ["device='gpu' not allowed"]),
    ("device-mps", EDGE + ["--set", "device=mps"], ["device='mps' not allowed"]),
    ("device-number", EDGE + ["--set", "device=1"], ["device=1", "expected str"]),
    ("device-empty", EDGE + ["--set", "device="], ["device=''", "not allowed"]),
    ("cuda-graphs-without-cuda", EDGE + ["--set", "cuda_graphs=true"], ["cuda_graphs=true", "no CUDA device"]),
    ("cuda-graphs-zero-gpus", EDGE + ["--set", "cuda_graphs=true", "--gpus-per-trial", "0"],
     ["cuda_graphs=true with --gpus-per-trial 0"]),
]

MEMORY = [
    ("data-per-class-million", EDGE + ["--set", "data_per_class=1000000"],
     ["data_per_class=1000000", "GB of memory", "more than the limit"]),
    ("data-per-class-200k", EDGE + ["--set", "data_per_class=200000"], ["data_per_class=200000", "limit"]),
    ("valid-per-class-ten-million", EDGE + ["--set", "valid_per_class=10000000"],
     ["valid_per_class=10000000", "GB of memory"]),
    ("grid-data-per-class-million", EDGE + ["--grid", "data_per_class=10,1000000"], ["data_per_class=1000000"]),
    ("sample-data-per-class-million", ["run", "edge-data-per-class", "--sample", "data_per_class=randint(10,1000000)"],
     ["data_per_class=1000000", "GB of memory"]),
    ("resolution-4000", EDGE + ["--set", "spatial_resolution=4000", "--set", "data_per_class=100"],
     ["spatial_resolution=4000", "GB of memory"]),
    ("five-class-half-million", ["run", "edge-five-class", "--smoke", "--set", "data_per_class=500000"],
     ["data_per_class=500000", "GB of memory"]),
    ("localization-hundred-million", LOCAL + ["--set", "n_samples=100000000"], ["n_samples=100000000", "GB"]),
    ("memory-limit-env-tiny", EDGE + ["--set", "data_per_class=1000", "--env", "SWEEP_MAX_TRIAL_MEMORY_GB=0.001"],
     ["GB of memory", "0.0 GB"]),
    ("memory-limit-env-word", EDGE + ["--env", "SWEEP_MAX_TRIAL_MEMORY_GB=lots"],
     ["$SWEEP_MAX_TRIAL_MEMORY_GB='lots'", "positive number"]),
    ("memory-limit-env-nan", EDGE + ["--env", "SWEEP_MAX_TRIAL_MEMORY_GB=nan"], ["positive number"]),
    ("memory-limit-env-negative", EDGE + ["--env", "SWEEP_MAX_TRIAL_MEMORY_GB=-1"], ["positive number"]),
]

SIZE = [
    ("seeds-twenty-thousand", EDGE + ["--seeds", "20000"], ["80,000 trials", "limit of 10,000", "--yes"]),
    ("seeds-three-thousand", EDGE + ["--seeds", "3000"], ["12,000 trials", "--yes"]),
    ("overfit-seeds", OVERFIT + ["--seeds", "5001"], ["10,002 trials"]),
    ("grid-times-seeds", EDGE + ["--grid", "lr=" + ",".join(f"0.{i:03d}1" for i in range(1, 101)),
                                 "--seeds", "30"], ["12,000 trials"]),
    ("num-samples-huge", HPO + ["--num-samples", "20000"], ["trials", "limit of 10,000"]),
    ("long-grid", EDGE + ["--grid", "data_per_class=" + ",".join(str(i) for i in range(1, 5002))],
     ["20,004 trials"]),
]

CONTRADICTIONS = [
    ("grid-duplicate-int", EDGE + ["--grid", "kernel_size=3,3", "--seeds", "1"],
     ["--grid kernel_size repeats the value 3", "replicates"]),
    ("grid-duplicate-float-spelling", EDGE + ["--grid", "lr=0.01,1e-2"], ["--grid lr repeats the value 0.01"]),
    ("grid-duplicate-int-float", EDGE + ["--grid", "data_per_class=10,10.0"], ["repeats the value 10"]),
    ("grid-duplicate-bool", ["run", "edge-permutation", "--smoke", "--grid", "use_permutation=True,true"],
     ["--grid use_permutation repeats the value True"]),
    ("grid-duplicate-list", OVERFIT + ["--grid", "hidden_dims=[[50,10],[50,10]]"], ["repeats the value [50, 10]"]),
    ("sample-choice-duplicate", EDGE + ["--sample", "kernel_size=choice(3,5,3)"],
     ["--sample kernel_size repeats the value 3"]),
    ("set-and-grid", EDGE + ["--set", "lr=0.1", "--grid", "lr=0.1,0.2"], ["'lr' is given by both --set and --grid"]),
    ("grid-twice", EDGE + ["--grid", "lr=0.1", "--grid", "lr=0.2"], ["--grid lr is given twice"]),
    ("set-twice", EDGE + ["--set", "lr=0.1", "--set", "lr=0.2"], ["--set lr is given twice"]),
    ("set-and-sample", EDGE + ["--set", "lr=0.1", "--sample", "lr=loguniform(1e-3,1e-1)"],
     ["'lr' is given by both --set and --sample"]),
    ("grid-and-sample", EDGE + ["--grid", "lr=0.1,0.2", "--sample", "lr=loguniform(1e-3,1e-1)"],
     ["'lr' is given by both --grid and --sample"]),
    ("data-root-twice", CIFAR + ["--set", "data_root={tmp}/other"],
     ["'data_root' is given by both --set and --data-root"]),
    ("set-threads", EDGE + ["--set", "threads=2"], ["'threads' is set by the driver", "--cpus-per-trial"]),
    ("grid-threads", EDGE + ["--grid", "threads=1,2"], ["'threads' is set by the driver"]),
]

PLACES = [
    ("storage-ftp", EDGE + ["--storage-path", "ftp://host/x"], ["--storage-path", "unsupported scheme 'ftp'"]),
    ("storage-http", EDGE + ["--storage-path", "http://host/x"], ["unsupported scheme 'http'"]),
    ("storage-made-up", EDGE + ["--storage-path", "foo://bar"], ["unsupported scheme 'foo'"]),
    ("storage-symlink-loop", EDGE + ["--storage-path", "{tmp}/loop/rr"], ["--storage-path", "cannot be"]),
    ("sqlite-garbage", EDGE + ["--tracking-uri", "sqlite:///{tmp}/garbage.db"], ["garbage.db", "not an SQLite file"]),
    ("sqlite-bad-pages", EDGE + ["--tracking-uri", "sqlite:///{tmp}/badpages.db"], ["badpages.db", "corrupt"]),
    ("sqlite-other-app", EDGE + ["--tracking-uri", "sqlite:///{tmp}/other.db"], ["other.db", "not MLflow's"]),
    ("sqlite-is-a-folder", EDGE + ["--tracking-uri", "sqlite:///{tmp}/folder.db"], ["folder.db", "cannot be read"]),
    ("tracking-not-mlflow", EDGE + ["--tracking-uri", "{web}"], ["{web}", "is not an MLflow tracking server"]),
    ("tracking-says-ok-to-all", EDGE + ["--tracking-uri", "{plain}"], ["is not an MLflow tracking server"]),
    ("data-root-symlink-loop", CIFAR[:-1] + ["{tmp}/loop"], ["data_root=", "symbolic link loop"]),
    ("mnist-root-symlink-loop", MNIST[:-1] + ["{tmp}/loop"], ["symbolic link loop"]),
    ("cifar-folder-symlink-loop", CIFAR, ["CIFAR-10 not found", "cifar-10-batches-py"]),
    ("data-root-is-a-file", CIFAR[:-1] + ["{tmp}/a_file"], ["data_root=", "is a file, not a folder"]),
    ("data-root-nul-byte", CIFAR[:-1] + ["{tmp}/a\0b"], ["data_root=", "not a usable path"]),
    ("ray-client-missing", EDGE + ["--address", "ray://127.0.0.1:10001"], ["Ray Client", "ray[client]"]),
    ("mnist-train-label-11", MNIST, ["MNIST labels", "out of range", "0-9"]),
    ("mnist-test-label-255", MNIST, ["MNIST labels", "t10k-labels-idx1-ubyte", "out of range"]),
]

HOSTILE_PICKLES = [
    ("cifar-payload-data-batch-1", CIFAR, ["data_batch_1", "was not loaded", "refused to load global"]),
    ("cifar-payload-data-batch-5", CIFAR, ["data_batch_5", "was not loaded"]),
    ("cifar-payload-test-batch", CIFAR, ["test_batch", "was not loaded"]),
    ("cifar-payload-batches-meta", CIFAR, ["batches.meta", "was not loaded"]),
    ("cifar-payload-eval", CIFAR, ["data_batch_2", "builtins.eval", "not part of the CIFAR-10"]),
    ("cifar-payload-system", CIFAR, ["data_batch_3", "posix.system"]),
    ("cifar-payload-inside-array", CIFAR, ["data_batch_4", "was not loaded"]),
    ("cifar-payload-getattr", CIFAR, ["test_batch", "builtins.getattr"]),
    ("cifar-payload-numpy-load", CIFAR, ["data_batch_1", "numpy.load"]),
    ("cifar-payload-protocol-5", CIFAR, ["data_batch_1", "was not loaded"]),
    ("cifar-labels-not-a-list", CIFAR, ["corrupt or truncated"]),
    ("cifar-data-float", CIFAR, ["corrupt or truncated"]),
]

CLASSES = {"non-finite": NON_FINITE, "ranges": RANGES, "resources": RESOURCES, "device": DEVICE, "memory": MEMORY,
           "size": SIZE, "contradictions": CONTRADICTIONS, "places": PLACES, "hostile-pickles": HOSTILE_PICKLES}
CASES = [(cls, *row) for cls, rows in CLASSES.items() for row in rows]
N_CASES = len(CASES)


# ---- hostile files -----------------------------------------------------------------------------

class _Payload:
    """Unpickling this calls `fn(*args)`: what a crafted batch file would do."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


class _Sneaky:
    """An object the unpickler must build via a global that is not part of the format."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def _batch(n: int = 4, **extra) -> dict:
    import numpy as np

    return {"batch_label": "x", "labels": [i % 10 for i in range(n)], "data": np.zeros((n, 3072), np.uint8),
            "filenames": [f"{i}.png" for i in range(n)], **extra}


def _plant(folder: Path, name: str, obj, protocol: int = 2) -> None:
    with open(folder / name, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)


def _damage(row: str, data: Path, tmp: Path) -> None:
    import numpy as np

    batches = data / "cifar-10-batches-py"
    marker = str(tmp / "pwned")
    plain = {
        "cifar-payload-data-batch-1": ("data_batch_1", _batch(payload=_Payload(os.mkdir, marker))),
        "cifar-payload-data-batch-5": ("data_batch_5", _Payload(os.mkdir, marker)),
        "cifar-payload-test-batch": ("test_batch", _batch(labels=_Payload(os.mkdir, marker))),
        "cifar-payload-batches-meta": ("batches.meta", {"label_names": _Payload(os.mkdir, marker)}),
        "cifar-payload-eval": ("data_batch_2", _Payload(eval, f"__import__('os').mkdir({marker!r})")),
        "cifar-payload-system": ("data_batch_3", _Payload(os.system, f"mkdir {marker}")),
        "cifar-payload-inside-array": ("data_batch_4", _batch(data=np.array([_Sneaky(marker)], dtype=object))),
        "cifar-payload-getattr": ("test_batch", _Payload(getattr, [], "append")),
        "cifar-payload-numpy-load": ("data_batch_1", _Payload(np.load, marker)),
        "cifar-labels-not-a-list": ("data_batch_1", _batch(labels=None)),
        "cifar-data-float": ("data_batch_1", _batch(data=np.zeros((4, 3072), np.float32))),
    }
    if row in plain:
        _plant(batches, *plain[row])
    elif row == "cifar-payload-protocol-5":
        _plant(batches, "data_batch_1", _batch(payload=_Payload(os.mkdir, marker)), protocol=5)
    elif row == "cifar-folder-symlink-loop":
        shutil.rmtree(batches)
        batches.symlink_to(batches)
    elif row.startswith("mnist-"):
        name, value = (("train-labels-idx1-ubyte", 11) if row == "mnist-train-label-11"
                       else ("t10k-labels-idx1-ubyte", 255))
        path = data / "MNIST" / "raw" / name
        raw = bytearray(path.read_bytes())
        raw[8 + 3] = value  # idx header is 8 bytes; the 4th label
        path.write_bytes(bytes(raw))


def _stores(tmp: Path) -> None:
    (tmp / "garbage.db").write_bytes(b"definitely not a database\n" * 50)
    good = tmp / "good.db"
    con = sqlite3.connect(good)
    con.execute("CREATE TABLE t (x)")
    con.executemany("INSERT INTO t VALUES (?)", [("x" * 500,)] * 200)
    con.commit()
    con.close()
    raw = bytearray(good.read_bytes())
    raw[100:len(raw)] = os.urandom(len(raw) - 100)  # valid header, garbage pages
    (tmp / "badpages.db").write_bytes(bytes(raw))
    con = sqlite3.connect(tmp / "other.db")
    con.execute("CREATE TABLE recipes (name TEXT)")
    con.commit()
    con.close()
    hour_ago = time.time() - 3600  # another program's database, not one being created right now
    os.utime(tmp / "other.db", (hour_ago, hour_ago))
    (tmp / "folder.db").mkdir()


class _NotMlflow(BaseHTTPRequestHandler):
    everything_ok = False

    def do_GET(self):  # noqa: N802 (http.server's name)
        ok = self.everything_ok or self.path == "/health"
        body = b"OK" if ok else b"<html><body>404 Not Found</body></html>"
        self.send_response(200 if ok else 404)
        self.send_header("Content-Type", "text/plain" if ok else "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class _OkToAll(_NotMlflow):
    everything_ok = True


@pytest.fixture(scope="module")
def web_servers():
    servers = [ThreadingHTTPServer(("127.0.0.1", 0), h) for h in (_NotMlflow, _OkToAll)]
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
    for t in threads:
        t.start()
    yield [f"http://127.0.0.1:{s.server_address[1]}" for s in servers]
    for s in servers:
        s.shutdown()
        s.server_close()


@pytest.fixture
def setup(tmp_path, fake_cifar, fake_mnist, web_servers):  # noqa: F811
    data = tmp_path / "data"
    shutil.copytree(fake_cifar[0], data)
    shutil.copytree(fake_mnist[0] / "MNIST", data / "MNIST")
    (tmp_path / "a_file").write_text("a file, not a folder")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    _stores(tmp_path)
    return {"data": str(data), "tmp": str(tmp_path), "web": web_servers[0], "plain": web_servers[1]}


@pytest.mark.parametrize("cls, row, argv, fragments", [pytest.param(*c, id=f"{c[0]}:{c[1]}") for c in CASES])
def test_hostile_input_refused_before_ray_and_mlflow(cls, row, argv, fragments, setup, tmp_path, capsys,
                                                      monkeypatch, ray_shutdown):
    _damage(row, Path(setup["data"]), tmp_path)
    argv = [a.format(**setup) for a in argv]
    while "--env" in argv:  # a row's environment variable, not a CLI flag
        i = argv.index("--env")
        key, _, value = argv[i + 1].partition("=")
        monkeypatch.setenv(key, value)
        del argv[i:i + 2]
    fragments = [f.format(**setup) for f in fragments]
    assert_refused(argv, fragments, tmp_path, capsys)
    assert not (tmp_path / "pwned").exists(), "a crafted pickle ran code"


def test_every_class_has_a_dozen_cases():
    for cls, rows in CLASSES.items():
        assert len(rows) >= (6 if cls == "size" else 12), cls
