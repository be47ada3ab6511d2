"""Train or fine-tune a Shunted Transformer on CIFAR-10, Fashion-MNIST or an image folder.

    python train/train.py --data fashion-mnist --input-size 32 --epochs 14 --output runs/fmnist
    torchrun --nproc_per_node=2 train/train.py --data cifar10:cifar10-jpg.tar.gz --compile ...
    torchrun --nproc_per_node=4 train/train.py ...            (DDP: NCCL on GPUs, gloo on CPU)
    python train/train.py --resume runs/fmnist/last.pt --epochs 20     (continue a run)
    python train/train.py --checkpoint shunted_t.pth --reset-head --data my_images/ --input-size 224
    python train/train.py --checkpoint student.pt --teacher trained.pt --distill 0.7 ...   (distillation)
    python train/train.py ... --ema 0.9995      (the final weights are the moving average of the weights)

Every epoch writes OUTPUT/last.pt (weights, metadata, optimizer/scheduler/RNG state); the end of
the run writes the weights-only OUTPUT/final.pt (or --final). --batch-size is per process.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
# Idle OpenMP threads sleep instead of spinning (set before torch loads OpenMP): on CPUs shared with
# other jobs, spinning threads made 2-thread training about 20x slower than one thread.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import time  # noqa: E402
from typing import NamedTuple  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn.parallel import DistributedDataParallel  # noqa: E402
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset  # noqa: E402

from common.outputs import check_output, create_parents  # noqa: E402
from data import (AUGMENTS, DataError, build_dataset, cifar10_preprocess, dataset_name, fashion_mnist_preprocess,  # noqa: E402
                  imagenet_preprocess)
from model import create_model, list_models, make_meta, read_checkpoint  # noqa: E402
from train import cli, distributed  # noqa: E402
from train.evaluate import class_counts, summarize  # noqa: E402
from train.cutmix import CutMix  # noqa: E402
from train.distill import Teacher  # noqa: E402
from train.ema import WeightAverage  # noqa: E402
from train.loop import AMP_CHOICES, Precision, make_optimizer, make_scheduler, train_one_epoch  # noqa: E402
from train.state import (read_training_state, rng_state, save_training_checkpoint, save_weights,  # noqa: E402
                         set_rng_state)

# Defaults: the recipe of weights/shunted_nano_fmnist.pt, which ran as 2 processes x --batch-size 64
# (same global batch; train/RESULTS.md).
DEFAULTS = {"model": "shunted_nano", "data": "fashion-mnist", "input_size": None, "epochs": 14,
            "batch_size": 128, "lr": 2e-3, "weight_decay": 0.05, "warmup_epochs": 1.0,
            "label_smoothing": 0.1, "cutmix": 0.0, "augment": "crop-flip", "val_fraction": 0.1, "drop_path": 0.0, "clip_grad": 1.0, "seed": 0, "workers": None,
            "output": "runs/train", "final": None, "weights_dtype": "float32", "steps": None, "amp": "auto",
            "compile": False, "teacher": None, "distill": 0.5, "distill_temperature": 1.0, "ema": 0.0}
NAMED_SPECS = {"fashion-mnist": fashion_mnist_preprocess, "cifar10": cifar10_preprocess}  # default size 32
LEGACY_KEYS = {"img_size": "input_size"}  # argument names of runs saved by earlier versions
WEIGHTS_DTYPES = {"float32": torch.float32, "float16": torch.float16}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Arguments not given stay None; :func:`resolve` fills them from --resume's run or DEFAULTS."""
    p = cli.Parser(description=__doc__.split("\n")[0], epilog=__doc__.split("\n", 2)[2],
                formatter_class=argparse.RawDescriptionHelpFormatter, argument_default=None)
    p.add_argument("--model", choices=list_models(), help=f"variant (default: --checkpoint's, else {DEFAULTS['model']})")
    p.add_argument("--data", help="'cifar10:PATH' (archive or folder), 'fashion-mnist[:DIR]' or a folder with one "
                                  "sub-folder per class")
    p.add_argument("--input-size", "--img-size", type=int, help="input size, a multiple of 32 (default: --checkpoint's, else 32 "
                                                "for cifar10 and fashion-mnist, else 224)")
    p.add_argument("--epochs", type=int, help=f"total epochs (default {DEFAULTS['epochs']})")
    p.add_argument("--batch-size", type=int, help=f"per process (default {DEFAULTS['batch_size']})")
    p.add_argument("--lr", type=float, help=f"peak AdamW learning rate (default {DEFAULTS['lr']})")
    p.add_argument("--weight-decay", type=float, help=f"(default {DEFAULTS['weight_decay']})")
    p.add_argument("--warmup-epochs", type=float, help=f"linear warm-up, then cosine (default {DEFAULTS['warmup_epochs']})")
    p.add_argument("--label-smoothing", type=float, help=f"(default {DEFAULTS['label_smoothing']})")
    p.add_argument("--cutmix", type=float, help="share of batches mixed by CutMix, in [0, 1) "
                                                f"(default {DEFAULTS['cutmix']})")
    p.add_argument("--augment", choices=AUGMENTS, help="cifar10 and fashion-mnist: crop-flip, or crop-flip then one "
                                                      f"TrivialAugment operation per image (default {DEFAULTS['augment']})")
    p.add_argument("--val-fraction", type=float, help="cifar10 and fashion-mnist: share of the training images held out "
                                                      f"for validation, 0 = train on all (default {DEFAULTS['val_fraction']})")
    p.add_argument("--drop-path", type=float, help=f"stochastic depth rate (default {DEFAULTS['drop_path']})")
    p.add_argument("--clip-grad", type=float, help=f"max gradient norm, 0 = off (default {DEFAULTS['clip_grad']})")
    p.add_argument("--seed", type=int, help=f"(default {DEFAULTS['seed']})")
    p.add_argument("--workers", type=int, help="DataLoader workers per process (default 4 on CUDA, 0 on CPU)")
    p.add_argument("--output", help=f"run folder for last.pt and final.pt (default {DEFAULTS['output']})")
    p.add_argument("--final", help="path of the weights-only checkpoint written at the end (default OUTPUT/final.pt)")
    p.add_argument("--force", action="store_true", default=False, help="overwrite the run in --output (or --final)")
    p.add_argument("--weights-dtype", choices=list(WEIGHTS_DTYPES), help="storage dtype of the final weights")
    p.add_argument("--resume", help="continue the run saved in this last.pt (its arguments are the defaults)")
    p.add_argument("--checkpoint", help="start from these weights (official Shunted checkpoint or ours)")
    p.add_argument("--reset-head", action="store_true", default=False,
                   help="with --checkpoint: new randomly initialised head for the data's classes")
    p.add_argument("--steps", type=int, help="cap on steps per epoch (quick tests)")
    p.add_argument("--amp", choices=AMP_CHOICES, help="mixed precision: CUDA auto = bf16, else fp16; CPU: bf16 (faster on CPUs with native bf16) or off (default auto)")
    p.add_argument("--compile", action="store_true", default=None,
                   help="torch.compile the training step (faster on CPU after a compile of minutes; docs/training.md)")
    p.add_argument("--teacher", help="distil from these trained weights (same classes and input size), which "
                                     "see each training image and its mirror (train/distill.py)")
    p.add_argument("--distill", type=float, help="with --teacher: weight of its loss, the labels' loss keeps the rest "
                                                 f"(default {DEFAULTS['distill']})")
    p.add_argument("--distill-temperature", type=float,
                   help=f"with --teacher: softmax temperature (default {DEFAULTS['distill_temperature']})")
    p.add_argument("--ema", type=float, metavar="DECAY", help="keep an exponential moving average of the weights, "
                   "updated every step with this decay (e.g. 0.9995), validated beside them and written as the "
                   "final weights (train/ema.py); 0 = off (default)")
    return p.parse_args(argv)


# (low, high, low allowed): the range every numeric argument must lie in
RANGES = {"epochs": (0, None, False), "batch_size": (0, None, False), "steps": (0, None, False),
          "input_size": (0, None, False), "lr": (0, None, False), "weight_decay": (0, None, True),
          "warmup_epochs": (0, None, True), "label_smoothing": (0, 1, True), "cutmix": (0, 1, True), "drop_path": (0, 1, True),
          "val_fraction": (0, 1, True), "distill": (0, 1, False), "distill_temperature": (0, None, False),
          "clip_grad": (0, None, True), "workers": (0, None, True), "ema": (0, 1, True)}


def resolve(args: argparse.Namespace, saved: dict | None) -> dict:
    """Given arguments, else those of the resumed run, else DEFAULTS; each checked against RANGES."""
    given = {k: v for k, v in vars(args).items() if v is not None and k in DEFAULTS}
    saved = {LEGACY_KEYS.get(k, k): v for k, v in (saved or {}).items()}
    config = {**DEFAULTS, **saved, **given}
    for key, (low, high, low_ok) in RANGES.items():
        value = config[key]
        if value is not None and (value < low or (value == low and not low_ok) or (high is not None and value >= high)):
            bounds = f"{'>=' if low_ok else '>'} {low}" + (f" and < {high}" if high is not None else "")
            raise cli.TrainError(f"--{key.replace('_', '-')} must be {bounds}, got {value}")
    return config


def check_outputs(args: argparse.Namespace, config: dict) -> tuple[Path, Path]:
    """The run folder and the final weights path, checked before any work: an earlier run is
    continued with --resume, replaced only with --force."""
    output = Path(config["output"])
    final = Path(config["final"]) if config["final"] else output / "final.pt"
    last = output / "last.pt"
    same_run = bool(args.resume) and last.is_file() and last.samefile(args.resume)
    if not (same_run or args.force) and (last.exists() or final.exists()):
        earlier = last if last.exists() else final
        raise cli.TrainError(f"{earlier} holds an earlier run; continue it with --resume {last}, pass --force to "
                             f"overwrite it, or choose another --output")
    check_output(last, force=True, flag="--output")
    check_output(final, force=True, flag="--final")
    return output, final


def choose_preprocess(config: dict, base: dict) -> dict:
    """The run's input size (``config['input_size']`` filled in) and preprocessing: a named data set's own;
    for a folder, that of the colour checkpoint being fine-tuned at its size (its features were learned
    with it), else ImageNet's. Default size: the checkpoint's, else 32 for named data sets, else 224."""
    named = dataset_name(config["data"])
    if config["input_size"] is None:
        config["input_size"] = base.get("input_size") or (32 if named else 224)
    if named:
        return NAMED_SPECS[named](config["input_size"])
    inherited = base.get("preprocess") if base.get("input_size") == config["input_size"] else None
    if inherited and not inherited.get("grayscale"):  # a grey model's spec would drop a folder's colour
        return inherited
    return imagenet_preprocess(config["input_size"])


def build_model(args: argparse.Namespace, config: dict, spec: dict, classes: list[str]) -> nn.Module:
    """A fresh or fine-tuned model whose metadata describes this run's data and preprocessing."""
    model = create_model(config["model"], num_classes=len(classes), checkpoint_path=args.checkpoint,
                         input_size=config["input_size"], reset_head=args.reset_head, labels=classes,
                         drop_path_rate=config["drop_path"])
    source = f"train/train.py on {config['data']}" + (f" from {Path(args.checkpoint).name}" if args.checkpoint else "")
    # a named data set is recorded by name (read where this machine keeps it), a folder by its path
    model.meta = make_meta(model.meta["variant"], len(classes), config["input_size"], classes, spec, source=source,
                           dataset=dataset_name(config["data"]) or str(config["data"]))
    return model


def _describe(meta: dict, keys: list[str]) -> str:
    """The values of ``keys`` in ``meta`` that a person can compare, in a few words."""
    labels = list(meta.get("labels") or [])
    words = {"labels": f"{len(labels)} classes ({', '.join(labels[:2])}, ...)",
             "input_size": f"{meta.get('input_size')} px", "preprocess": f"preprocessing {meta.get('preprocess')}"}
    return ", ".join(words[key] for key in keys)


def load_teacher(config: dict, meta: dict, device: torch.device) -> Teacher | None:
    """The run's teacher, checked to know the student's classes at its input size; None without one."""
    if not config["teacher"]:
        return None
    model = create_model(checkpoint_path=config["teacher"])
    differ = [key for key in ("labels", "input_size", "preprocess") if model.meta.get(key) != meta.get(key)]
    if differ:
        raise cli.TrainError(f"--teacher {config['teacher']} differs from the student in {' and '.join(differ)}: "
                             f"{_describe(model.meta, differ)} against {_describe(meta, differ)}; "
                             "pass a teacher trained on the same data, input size and preprocessing")
    return Teacher(model.to(device), config["distill"], config["distill_temperature"])


def validate(model: nn.Module, loader: DataLoader, ctx: distributed.Context, classes: list[str]) -> dict:
    """Top-1/top-5 of ``model`` on the val split, summed over all processes."""
    counts = class_counts(model, loader, ctx.device, len(classes))
    return summarize(distributed.all_reduce_sum(counts, ctx), classes)


class Data(NamedTuple):
    train_set: Dataset
    sampler: DistributedSampler
    train_loader: DataLoader
    val_loader: DataLoader | None  # this process's share of the val split, without padding


def load_data(config: dict, spec: dict, ctx: distributed.Context) -> Data:
    workers = config["workers"] if config["workers"] is not None else (4 if ctx.device.type == "cuda" else 0)
    pin = ctx.device.type == "cuda"
    split = {"val_fraction": config["val_fraction"], "augment": config["augment"]}
    train_set = build_dataset(config["data"], "train", spec, train=True, seed=config["seed"], **split)
    if len(train_set) == 0:
        raise DataError(f"no training images in {config['data']}: add images to its class folders")
    sampler = DistributedSampler(train_set, ctx.world_size, ctx.rank, shuffle=True, seed=config["seed"])
    train_loader = DataLoader(train_set, config["batch_size"], sampler=sampler, num_workers=workers, pin_memory=pin)
    val_set = build_dataset(config["data"], "val", spec, **split)
    shard = Subset(val_set, range(ctx.rank, len(val_set), ctx.world_size))
    val_loader = DataLoader(shard, 2 * config["batch_size"], num_workers=workers, pin_memory=pin) if len(val_set) else None
    return Data(train_set, sampler, train_loader, val_loader)


def run(argv: list[str] | None = None) -> nn.Module:
    """Parse ``argv``, train, and return the trained model (unwrapped, on its device)."""
    args = parse_args(argv)
    if args.resume and args.checkpoint:
        raise cli.TrainError("pass either --resume (continue a run) or --checkpoint (start from weights), not both")
    if args.reset_head and not args.checkpoint:
        raise cli.TrainError("--reset-head needs --checkpoint (the weights to fine-tune)")
    saved = read_training_state(args.resume) if args.resume else None
    config = resolve(args, saved["args"] if saved else None)
    if args.checkpoint and args.model is None:
        config["model"] = None  # the checkpoint's own variant (create_model reads it)
    outputs = check_outputs(args, config)
    with distributed.session() as ctx:
        return _train(args, config, saved, ctx, outputs)


def _train(args: argparse.Namespace, config: dict, saved: dict | None, ctx: distributed.Context,
           outputs: tuple[Path, Path]) -> nn.Module:
    started = time.perf_counter()
    output, final_path = outputs
    precision = Precision.choose(config["amp"], ctx.device)
    torch.manual_seed(config["seed"])  # identical initial weights on every process
    if saved:
        model = create_model(config["model"], checkpoint_path=args.resume, drop_path_rate=config["drop_path"])
        model.meta = saved["meta"]
        data = load_data(config, model.meta["preprocess"], ctx)
    else:
        spec = choose_preprocess(config, read_checkpoint(args.checkpoint).meta if args.checkpoint else {})
        data = load_data(config, spec, ctx)
        model = build_model(args, config, spec, data.train_set.classes)
    meta, classes = model.meta, data.train_set.classes
    if len(classes) != meta["num_classes"]:
        raise cli.TrainError(f"{config['data']} has {len(classes)} classes but {args.resume} has {meta['num_classes']}")
    create_parents(output / "last.pt")
    create_parents(final_path)

    model.to(ctx.device, memory_format=torch.channels_last if precision.channels_last else torch.preserve_format)
    steps = min(len(data.train_loader), config["steps"] or len(data.train_loader))
    optimizer = make_optimizer(model, config["lr"], config["weight_decay"])
    scheduler = make_scheduler(optimizer, round(config["warmup_epochs"] * steps), config["epochs"] * steps)
    scaler = precision.scaler(ctx.device)
    ddp = DistributedDataParallel(model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None) \
        if ctx.world_size > 1 else model
    step_model = torch.compile(ddp, dynamic=False) if config["compile"] else ddp  # the last batch: one more graph
    criterion = nn.CrossEntropyLoss(label_smoothing=config["label_smoothing"])
    cutmix = CutMix(config["cutmix"])
    teacher = load_teacher(config, meta, ctx.device)
    ema = WeightAverage(model, config["ema"]) if config["ema"] else None

    start_epoch, history = 0, []
    torch.manual_seed(config["seed"] + ctx.rank)  # different drop-path masks per process
    if saved:
        start_epoch, history = saved["epoch"], saved["history"]
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        scaler.load_state_dict(saved["scaler"])
        if len(saved["rng"]) == ctx.world_size:
            set_rng_state(saved["rng"][ctx.rank], ctx.device)
        if ema is not None and "ema" in saved:  # else the average starts from the resumed weights
            ema.load_state_dict(saved["ema"])
    if ctx.is_main:
        print(f"{meta['variant']} at {meta['input_size']}px, {len(classes)} classes, {len(data.train_set)} train images, "
              f"{steps} steps/epoch x {ctx.world_size} process(es) on {ctx.device}"
              + (f", resuming after epoch {start_epoch}" if saved else "")
              + (f", distilling from {config['teacher']}" if teacher else ""), flush=True)

    for epoch in range(start_epoch, config["epochs"]):
        data.sampler.set_epoch(epoch)
        data.train_set.set_epoch(epoch)
        stats = train_one_epoch(step_model, data.train_loader, steps, optimizer=optimizer, scheduler=scheduler,
                                scaler=scaler, criterion=criterion, precision=precision,
                                clip_grad=config["clip_grad"], ctx=ctx, desc=f"epoch {epoch + 1}/{config['epochs']}",
                                cutmix=cutmix, rng=np.random.default_rng([config["seed"], epoch, ctx.rank]),
                                teacher=teacher, ema=ema)
        distributed.broadcast_buffers(model, ctx)
        val = val_ema = None
        if data.val_loader is not None:
            val = validate(model, data.val_loader, ctx, classes)
            val_ema = ema and validate(ema.model, data.val_loader, ctx, classes)
        history.append({"epoch": epoch + 1, "loss": round(stats["loss"], 4), "train_acc": round(stats["acc"], 2),
                        "val_top1": val and val["top1"], "val_top5": val and val["top5"],
                        **({"val_top1_ema": val_ema and val_ema["top1"]} if ema else {}),
                        "seconds": round(stats["seconds"], 1), "img_s": round(stats["img_s"], 1)})
        rng_states = distributed.gather_objects(rng_state(ctx.device), ctx)
        if ctx.is_main:
            save_training_checkpoint(output / "last.pt", model, meta, epoch=epoch + 1, optimizer=optimizer,
                                     scheduler=scheduler, scaler=scaler, rng_states=rng_states, args=config,
                                     history=history, ema=ema and ema.state_dict())
            h = history[-1]
            val_text = (f"{val['top1']:.2f}%" + (f" (EMA {val_ema['top1']:.2f}%)" if val_ema else "")
                        if val else "- (no val split)")
            print(f"epoch {h['epoch']}/{config['epochs']}: loss {h['loss']:.4f}, train acc {h['train_acc']:.2f}%, "
                  f"val top-1 {val_text}, {h['seconds']:.0f} s, {h['img_s']:.0f} img/s", flush=True)
    if ctx.is_main:
        save_weights(final_path, ema.model if ema else model, meta, WEIGHTS_DTYPES[config["weights_dtype"]], history,
                     config, overwrite=args.force or bool(saved))
        print(f"wrote {output / 'last.pt'} and {final_path}" + (" (the EMA of the weights)" if ema else "")
              + f" ({time.perf_counter() - started:.0f} s)", flush=True)
    return model


def main(argv: list[str] | None = None) -> int:
    return cli.run_cli(run, argv)


if __name__ == "__main__":
    sys.exit(main())
