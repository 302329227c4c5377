"""Every bad input is refused the same way: exit status 2, exactly one stderr line
``error: ...``, no traceback, no new file anywhere under the out directory or the
working directory, and the existing runs byte-for-byte unchanged.

One table (``BAD``, and ``SAYS`` for rows whose line must also name the problem); a new
command adds its rows. Most rows run in-process through click's CliRunner (the same
``main`` as the console script, standalone mode); the ``jobs/*.py`` rows and a handful of
others run as real processes in a bare shell.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from helpers import DIGITS_TRAIN, REPO, bare_env

from raypkg.cli import main
from raypkg.errors import UsageError

# Placeholders: {out} the runs root, {run} a finished train run in it, {dg} a finished
# DeltaGrad run, {unfinished} a run directory without summary.json, {ro} a directory
# this process cannot write to, {file} a regular file, {bin} a binary file, {cfg:NAME}
# a config file from CONFIGS.
CONFIGS = {
    "nan": "epochs: .nan\n",
    "amp_word": "amp: 'yes'\n",
    "precision_word": "precision: half\n",
    "inf_lr": "lr: .inf\n",
    "list": "- epochs\n- 3\n",
    "unknown": "epochs: 2\nlearning_rate: 0.1\n",
    "epochs_list": "epochs: [3]\n",
    "lr_word": "lr: fast\n",
    "epochs_float": "epochs: 2.5\n",
    "bad_yaml": "epochs: [1, 2\n",
    "twice": "epochs: 2\nlr: 0.1\nepochs: 3\n",
    "many_unknown": "".join(f"key{i}: 1\n" for i in range(2000)),
    "momentum_str": "momentum: '0.9'\n",
    "space_bad_key": "method: train\nspaces: {}\n",
    "space_bad_yaml": "method: train\nspace: {lr: [\n",
    "space_word_bound": "method: train\nspace: {lr: {uniform: [abc, 1]}}\n",
    "space_reversed": "method: train\nspace: {lr: {loguniform: [0.3, 0.02]}}\n",
    "space_log_zero": "method: train\nspace: {lr: {loguniform: [0, 0.1]}}\n",
    "space_empty_choice": "method: train\nspace: {batch_size: {choice: []}}\n",
    "space_metric": "method: train\nmetric: acc\nspace: {lr: {choice: [0.1]}}\n",
    "space_no_valid_trial": "method: crest\nspace: {train_frac: {choice: [0, 2]}}\n",
    "space_bad_base": "method: train\nbase: {epochs: 0}\nspace: {lr: {choice: [0.1]}}\n",
    "huge_seed": "seed: 99999999999999999999\n",
    "space_empty": "",
    "space_base_list": "method: train\nbase: [epochs, 3]\nspace: {lr: {choice: [0.1]}}\n",
    "space_nothing": "method: train\nspace: {}\n",
    "space_twice": "method: train\nspace: {lr: {choice: [0.1]}}\nmethod: crest\n",
    "space_many_unknown": "method: train\n" + "".join(f"key{i}: 1\n" for i in range(500)),
    # issue 41: settings that act only with another one, from a config file or a tune space
    "dense_density": "sparse: false\ndensity: 0.1\n",
    "gamma_no_agc": "agc_gamma: 0.3\n",
    "random_subset": "selection_method: random\nrandom_subset_size: 0.1\n",
    "drop_interval": "drop_interval: 5\n",
    "select_weighting": "weighting: loss\n",
    "select_epochs": "epochs: 5\n",
    "reselect_never": "selection: glister\nreselect_every: 30\n",
    "space_gamma_no_agc": "method: sparse\nspace: {agc_gamma: {choice: [0.1, 0.3]}}\n",
    "space_one_bad_choice": "method: crest\nspace: {train_frac: {choice: [0.1, 2]}}\n",
    "space_bad_range_end": "method: train\nspace: {momentum: {uniform: [0.5, 1.0]}}\n",
    "space_grid_bad": "method: train\nsearch: grid\nspace: {epochs: {choice: [2, 0]}}\n",
    "space_randint_end": "method: train\nspace: {lr_warmup_epochs: {randint: [0, 31]}}\n",
    "space_baseline_knob": "method: crest\nbase: {selection_method: random}\n"
                           "space: {hessian_probes: {choice: [1, 2]}}\n",
    "space_reselect_never": "method: coreset\nbase: {selection: glister, epochs: 5}\n"
                            "space: {reselect_every: {choice: [2, 5]}}\n",
    "space_pair": "method: sparse\nspace: {agc: {choice: [false, true]}, agc_gamma: {choice: [0.1, 0.3]}}\n",
    # issue 48: one check per value whatever the entry point; contradictions refused
    "space_cl_base": "method: train\nbase: {model: mlp, memory_format: channels_last}\nspace: {lr: {choice: [0.1]}}\n",
    "space_cl_trial": "method: train\nbase: {model: logreg}\n"
                      "space: {memory_format: {choice: [contiguous, channels_last]}}\n",
    "space_nan_target": "method: train\nbase: {target_acc: .nan}\nspace: {lr: {choice: [0.1]}}\n",
    "stack_mapping": "stack: {sparse: 1}\n",
    "stack_number": "stack: 3\n",
    "stack_numbers": "stack: [1, 2]\n",
    "stack_twice": "stack: [sparse, sparse]\n",
    "amp_bf16": "amp: false\nprecision: bf16\n",
    "amp_auto": "amp: false\nprecision: auto\n",
    "amp_fp32": "amp: true\nprecision: fp32\n",
    "cl_lenet": "model: lenet5\nmemory_format: channels_last\n",
    "select_target": "target_acc: 0.5\n",
    "stack_empty": "stack: [sparse, '']\n",
    "stack_empty_text": "stack: 'sparse,'\n",
    "space_stack_twice": "method: infobatch+sparse\nbase: {stack: [sparse]}\nspace: {density: {choice: [0.1]}}\n",
    "space_stack_mapping": "method: infobatch\nbase: {stack: {sparse: 1}}\nspace: {delta: {choice: [0.5]}}\n",
    # issue 65: threads, and settings too small to act
    "threads_zero": "threads: 0\n",
    "freeze_short": "epochs: 2\n",
    "ema_forever": "ema_half_life: 1.0e+12\n",
    "resize_whole": "resize_increment: 64\n",
    "space_freeze_short": "method: train\nbase: {stack: [layer-freezing], epochs: 2}\nspace: {lr: {choice: [0.1]}}\n",
    "space_ema_forever": "method: train\nbase: {stack: [ema], epochs: 3}\nspace: {ema_half_life: {choice: [1, 3]}}\n",
    "space_resize_whole": "method: train\nbase: {stack: [progressive-resizing], model: resnet20}\n"
                          "space: {resize_increment: {choice: [4, 64]}}\n",
    "space_threads": "method: train\nspace: {threads: {choice: [1, 0]}}\n",
    "space_base_threads": "method: train\nbase: {threads: 4}\nspace: {lr: {choice: [0.1]}}\n",
    "space_base_workers": "method: train\nbase: {workers: 2}\nspace: {lr: {choice: [0.1]}}\n",
    "space_sweep_workers": "method: train\nspace: {workers: {choice: [0, 2]}}\n",
    "space_own_values": "method: train\nbase: {threads: 1, workers: 0, epochs: 0}\nspace: {lr: {choice: [0.1]}}\n",
}

T = ["train", "--out", "{out}"]
S = ["select", "--out", "{out}"]
C = ["run", "coreset", "--out", "{out}"]
L = ["run", "lipt", "--out", "{out}"]
U = ["unlearn", "train", "--out", "{out}"]
D = ["unlearn", "delete", "{dg}"]
A = ["unlearn", "add", "{dg}"]
O = ["unlearn", "online", "{dg}"]
TUNE = ["tune", "train", "--out", "{out}"]
B = ["bench"]

# An S3 endpoint that does not answer (nothing listens on port 1).
S3_CLOSED = "s3://bucket/x?endpoint_override=127.0.0.1:1&scheme=http"
# A plug-in dataset that leaves a file in the working directory when it loads: a row with
# it fails the no-new-file check unless the refusal comes before the data loads.
MARKS = ["--dataset", "plugin_example.data:marks_loading"]
HUGE = "99999999999999999999"  # beyond int64

BAD = [
    # ----- issue 21: --label-noise, bench frontier ------------------------------------------------
    T + ["--label-noise", "1"], T + ["--label-noise", "-0.1"], T + ["--label-noise", "nan"],
    C + ["--label-noise", "1.5"], U + ["--label-noise", "1"],
    B + ["frontier", "--methods", "nope"], B + ["frontier", "--methods", "uniform,gradmatch"],
    B + ["frontier", "--fractions", "0"], B + ["frontier", "--fractions", "0.1,1.5"],
    B + ["frontier", "--fractions", "0.1,x"],
    B + ["frontier", "--curve-schedules", "step"], B + ["frontier", "--schedule", "step"], B + ["frontier", "--curve-schedules", "linear", "--curve-schedules", "linear"],
    B + ["frontier", "--label-noise", "1"], B + ["frontier", "--seeds", "0"], B + ["frontier", "--setup", "nope"],
    B + ["frontier", "--selection-models", "nosuch"], B + ["frontier", "--selection-models", "mlp"],
    B + ["frontier", "--dataset", "nope"], B + ["frontier", "--epochs", "0"], B + ["frontier", "--save", "{ro}/f"],
    B + ["frontier", "--address", "127.0.0.1:1"], B + ["frontier", "--dataset", "digits", "--train-size", "100"],
    # ----- train ---------------------------------------------------------------------------
    T + ["--lr", "nan"], T + ["--lr", "inf"], T + ["--lr", "-0.1"], T + ["--lr", "0"],
    T + ["--wd", "nan"], T + ["--wd", "-1"], T + ["--lr-warmup-epochs", "-2"], T + ["--momentum", "-1"],
    T + ["--momentum", "1.5"], T + ["--momentum", "nan"], T + ["--epochs", "0"], T + ["--epochs", "-3"],
    T + ["--epochs", "abc"], T + ["--batch-size", "0"], T + ["--dataset", "nope"], T + ["--model", "nope"],
    T + ["--data-path", "stream"], T + ["--data-path", "fast"], U + ["--data-path", "stream"],
    T + ["--decode-block", "0"],
    T + ["--schedule", "triangle"], T + ["--config", "{cfg:nan}"], T + ["--config", "{cfg:inf_lr}"],
    T + ["--config", "{bin}"], T + ["--config", "/no/such/config.yaml"], T + ["--config", "{cfg:list}"],
    T + ["--config", "{cfg:unknown}"], T + ["--config", "{cfg:epochs_list}"], T + ["--config", "{cfg:lr_word}"],
    T + ["--config", "{cfg:epochs_float}"], T + ["--config", "{cfg:bad_yaml}"],
    T + ["--config", "{cfg:momentum_str}"], ["train", "--out", "{ro}"], ["train", "--out", "{file}"],
    T + ["--name", "../x"], T + ["--name", "a/b"], T + ["--name", ".."], T + ["--name", "existing"],
    T + ["--lr", "0.1", "0.05"], T + ["--lr", "0.1", "--lrlen", "0"], T + ["--gamma", "0"],
    T + ["--gamma", "nan"], T + ["--schedule", "multistep", "--milestones", "100", "--epochs", "5"],
    T + ["--workers", "-1"], T + ["--max-failures", "-1"], T + ["--train-size", "0"],
    T + ["--data-dir", "/no/such/dir"], T + ["--data-dir", "{file}"], T + ["--lr-warmup-epochs", "30", "--epochs", "30"],
    T + ["--nesterov", "--momentum", "0"], T + ["--wandb", "bogus"], T + ["--no-such-flag"],
    # ----- select / run coreset -------------------------------------------------------------
    S + ["--fraction", "0"], S + ["--fraction", "1.5"], S + ["--fraction", "nan"], S + ["--budget", "0"],
    S + ["--pretrain-epochs", "-2"], S + ["--repeats", "0", "--method", "grand"], S + ["--method", "nope"],
    S + ["--actors", "-1"], S + ["--option", "eta"], S + ["--embedding", "nope"], S + ["--lr", "nan"],
    S + ["--proj-dim", "0"], S + ["--repeats", "3", "--method", "uniform"], S + ["--name", "../x"],
    C + ["--selection", "nope"], C + ["--fraction", "-0.1"], C + ["--lr-warmup-epochs", "-1"],
    C + ["--pretrain-epochs", "-2"], C + ["--class-budget", "0"], C + ["--wd", "inf"],
    # adaptive selection (--reselect-every, --warm-start, --per-batch)
    C + ["--reselect-every", "0"], C + ["--warm-start", "0.3"], C + ["--reselect-every", "2", "--warm-start", "1"],
    C + ["--selection", "rs2", "--reselect-every", "2"], C + ["--selection", "grand", "--per-batch"],
    C + ["--selection", "forgetting", "--reselect-every", "2"], C + ["--reselect-every", "2", "--repeats", "3"],
    C + ["--selection", "craig", "--per-batch", "--class-budget", "5"],
    C + ["--selection", "craig", "--per-batch", "--fraction", "0.999"],
    C + ["--reselect-every", "2", "--workers", "1", "--actors", "1"],
    ["run", "coreset", "--out", "{ro}"],
    # ----- run lipt -------------------------------------------------------------------------
    L + ["--shards", "5000"], L + ["--shards", "200"], L + ["--density", "0"], L + ["--density", "1.5"],
    L + ["--density", "nan"], L + ["--selection", "nope"], L + ["--shards", "0"], L + ["--pre-epochs", "0"],
    L + ["--score", "ensemble", "--selection", "glister"], L + ["--reselect", "0", "--selection", "grand"],
    L + ["--warm-start", "0.5", "--reselect", "2"], L + ["--selection", "forgetting"],
    L + ["--sparse-init", "nope"], L + ["--repeats", "3"],
    # ----- unlearn --------------------------------------------------------------------------
    U + ["--lr", "nan"], U + ["--wd", "nan"], U + ["--momentum", "0.9"], U + ["--augment"],
    U + ["--holdout", "1"], U + ["--holdout", "nan"], U + ["--epochs", "0"], U + ["--batch-size", "-1"],
    U + ["--dtype", "float16"], U + ["--model", "nope"], U + ["--actors", "-1"], U + ["--threads", "0"],
    U + ["--name", "../x"], ["unlearn", "train", "--out", "{ro}"],
    D + ["--ratio", "0"], D + ["--ratio", "1.5"], D + ["--ratio", "nan"], D, D + ["--ratio", "0.01", "--period", "0"],
    D + ["--ratio", "0.01", "-m", "0"], D + ["--ratio", "0.01", "--init", "-1"], D + ["--ratio", "0.01", "--eps", "nan"],
    ["unlearn", "delete", "{run}", "--ratio", "0.01"], D + ["--ids", "/no/such/ids.txt"],
    D + ["--ratio", "0.01", "--name", "../x"], D + ["--ratio", "0.01", "--method", "nope"],
    A + ["--ratio", "0.01"], A + ["--ratio", "-1"],
    O + ["--requests", "0"], O + ["--samples-per-request", "0"], O + ["--ratio-per-request", "2"],
    O + ["--drift-tol", "nan"], O + ["--retrain-every", "-1"], O + ["--kind", "add"], O + ["--name", "../x"],
    # ----- tune -----------------------------------------------------------------------------
    ["tune", "nosuch", "--out", "{out}"], TUNE + ["--num-samples", "0"], TUNE + ["--space", "/no/such.yaml"],
    TUNE + ["--space", "{cfg:space_bad_key}"], TUNE + ["--space", "{cfg:space_bad_yaml}"],
    TUNE + ["--max-concurrent", "0"], ["tune", "train", "--out", "{ro}"], TUNE + ["--scheduler", "hyperband"],
    TUNE + ["--space", "{cfg:space_word_bound}"], TUNE + ["--space", "{cfg:space_reversed}"],
    TUNE + ["--space", "{cfg:space_log_zero}"], TUNE + ["--space", "{cfg:space_empty_choice}"],
    TUNE + ["--space", "{cfg:space_metric}"], TUNE + ["--space", "{cfg:space_bad_base}"],
    ["tune", "crest", "--out", "{out}", "--space", "{cfg:space_no_valid_trial}"],
    # ----- report ---------------------------------------------------------------------------
    ["report", "/no/such/run"], ["report", "{unfinished}"], ["report", "{run}", "--save", "{ro}/t.parquet"],
    ["report", "{run}", "--save", "{out}/t.txt"], ["report", "{run}", "--plot", "{out}/x.jpg"],
    ["report", "{run}", "--plot", "{ro}/x.png"], ["report"],
    # ----- bench ----------------------------------------------------------------------------
    B + ["overhead", "--workers", "abc"], B + ["overhead", "--epochs", "1"], B + ["overhead", "--workers", "-1"],
    B + ["overhead", "--compile", "fast"], B + ["overhead", "--peak-tflops", "0"], B + ["overhead", "--gpu"],
    B + ["overhead", "--model", "mlp", "--memory-format", "channels_last"], B + ["overhead", "--precision", "fp16"],
    B + ["data", "--sizes", "0"], B + ["data", "--sizes", "5k"], B + ["data", "--modes", "disk"],
    B + ["data", "--workers", "-1"], B + ["data", "--model", "nope"], B + ["data", "--work-dir", "{out}"],
    B + ["data", "--decode-blocks", "0"], B + ["data", "--decode-blocks", "big"], B + ["data", "--epochs", "1"],
    B + ["overhead", "--batch-size", "0"], B + ["selection", "--actors", "1"], B + ["selection", "--fraction", "0"],
    B + ["selection", "--methods", "nope"], B + ["selection", "--save", "{ro}/sel"],
    B + ["deltagrad", "--ratios", "0"], B + ["deltagrad", "--epochs", "0"], B + ["deltagrad", "--period", "0"],
    B + ["deltagrad", "--also", "1,2"], B + ["deltagrad", "--lr", "nan"], B + ["deltagrad", "--out", "{ro}"],
    B + ["crest", "--set", "nosuch=1"], B + ["crest", "--set", "train_frac=0.2"], B + ["crest", "--set", "novalue"],
    B + ["crest", "--set", "check_thresh_factor=-1"], B + ["crest", "--set", "lr=0.2"], B + ["crest", "--fracs", "0.1,x"],
    B + ["lipt", "--set", "lr=0.2"], B + ["lipt", "--set", "shards=4"], B + ["lipt", "--set", "score=best"],
    B + ["lipt", "--set", "score=ensemble"],
    B + ["nosuch"], B + ["sparse", "--save", "/no/such/dir/x"], B + ["sparse", "--density", "0.05,x"],
    # ----- issue 18's newcomer rows: tracebacks, silently accepted, defaults that skipped the method ------
    T + ["--seed", "-1"], L + ["--seed", "-1"], ["run", "crest", "--out", "{out}", "--seed", "-1"],
    T + ["--train-size", "5"], T + ["--test-size", "5", "--dataset", "digits"],
    C + ["--data-path", "stream", "--selection", "glister"], L + ["--selection", "uniform"], L + ["--merge", "mean"], B + ["lipt", "--merge", "mean"],
    B + ["lipt", "--set", "merge=zeros"], ["run", "sparse", "--out", "/proc/effray"], ["run", "sparse", "--out", "{out}", "--dense", "--density", "0.05"],
    T + ["--address", "127.0.0.1:1"], ["run", "crest", "--out", "{out}", "--address", "127.0.0.1:1"],
    ["tune", "crest", "--out", "{out}", "--set", "lr=0.1"], ["tune", "crest", "--out", "{out}", "--set", "nosuch=1"],
    ["tune", "crest", "--out", "{out}", "--set", "epochs=0"],
    # ----- issue 19: plug-in models and datasets by import path (tests/plugin_example) ------------
    T + ["--model", "plugin_example.nope:f"], T + ["--model", "plugin_example.broken:f"],
    T + ["--model", "plugin_example.models:nope"], T + ["--model", "plugin_example.models:NOT_CALLABLE"],
    T + ["--model", "plugin_example.models:no_arguments"], T + ["--model", ":f"], C + ["--dataset", "nope:f"],
    T + ["--model", "plugin_example.models:not_a_module"], T + ["--model", "plugin_example.models:wrong_size"],
    T + ["--model", "plugin_example.models:softmax_output"], T + ["--model", "plugin_example.models:no_linear"],
    C + ["--model", "plugin_example.models:wrong_size"], L + ["--model", "plugin_example.models:softmax_output"],
    ["run", "crest", "--out", "{out}", "--model", "plugin_example.models:not_a_module"],
    T + ["--dataset", "plugin_example.data:wrong_type"], T + ["--dataset", "plugin_example.data:labels_out_of_range"],
    T + ["--dataset", "plugin_example.data:negative_labels"], T + ["--dataset", "plugin_example.data:length_mismatch"],
    T + ["--dataset", "plugin_example.data:shape_mismatch"], T + ["--dataset", "plugin_example.data:float_labels"],
    T + ["--dataset", "plugin_example.data:two_arguments"], T + ["--dataset", "plugin_example.data:tabular",
                                                                 "--train-size", "100"],
    L + ["--dataset", "plugin_example.data:wrong_type"],
    # ----- issue 20: --storage that cannot be opened or written ------------------------------------
    T + ["--storage", "bogus://x"], T + ["--storage", "{ro}/store"], T + ["--storage", "{file}"],
    T + ["--storage", ""], C + ["--storage", "bogus://x"], TUNE + ["--storage", "bogus://x"],
    TUNE + ["--storage", "{ro}/store"], T + ["--storage", S3_CLOSED], T + ["--workers", "1", "--storage", S3_CLOSED],
    T + ["--config", S3_CLOSED], T + ["--config", "file:///no/such/config.yaml"], T + ["--config", "bogus://x/c.yaml"],
    ["report", S3_CLOSED], ["report", "file:///no/such/run"], ["report", "bogus://x/run"],
    T + ["--placement", "diagonal"], T + ["--workers", "2", "--placement", "strict-spread"],
    T + ["--cpus-per-worker", "0"], C + ["--placement", "diagonal"], B + ["overhead", "--placements", "pack,diagonal"],
    # ----- issue 30: plug-ins that raise or exit, models that cannot train -----------------------
    T + ["--model", "plugin_example.models:raises"], T + ["--model", "plugin_example.models:exits"],
    T + ["--model", "plugin_example.exits:f"], T + ["--dataset", "plugin_example.data:raises"],
    T + ["--dataset", "plugin_example.data:exits"], T + ["--model", "plugin_example.models:frozen"],
    T + ["--model", "plugin_example.models:breaks_in_training"],
    ["run", "crest", "--out", "{out}", "--model", "plugin_example.models:breaks_in_training"],
    T + ["--dataset", "plugin_example.data:labels_at_num_classes"],
    # ----- issue 30: numbers beyond int64, names ---------------------------------------------------
    T + ["--seed", HUGE], T + ["--seed", "4294967296"], T + ["--epochs", HUGE], T + ["--batch-size", HUGE],
    T + ["--lr", "0.1", "--lrlen", HUGE], T + ["--config", "{cfg:huge_seed}"], C + ["--seed", HUGE],
    L + ["--seed", HUGE], ["run", "crest", "--out", "{out}", "--seed", HUGE], U + ["--seed", HUGE],
    S + ["--budget", HUGE], T + ["--name", "tab\there"], T + ["--name", "del\x7f"], T + ["--name", "\u00e9" * 128],
    # ----- issue 30: paths, storage probes ---------------------------------------------------------
    T + ["--storage", "file:rel"], T + ["--storage", "file://rel/x"], T + ["--config", "file:rel.yaml"],
    ["report", "file:rel"], T + ["--storage", "gs://effray-no-such-bucket/x"],
    # ----- issue 30: refused before the data loads or Ray starts (MARKS) ----------------------------
    T + ["--name", "existing", *MARKS], S + ["--name", "existing", *MARKS], C + ["--name", "existing", *MARKS],
    L + ["--name", "existing", *MARKS], ["run", "crest", "--out", "{out}", "--name", "existing", *MARKS],
    ["run", "sparse", "--out", "{out}", "--name", "existing", *MARKS],
    ["run", "infobatch", "--out", "{out}", "--name", "existing", *MARKS], U + ["--name", "existing", *MARKS],
    T + ["--placement", "spread", *MARKS], T + ["--cpus-per-worker", "1", *MARKS],
    ["run", "crest", "--out", "{out}", "--no-overlap", *MARKS], S + ["--actors", "1000", *MARKS],
    L + ["--actors", "1000", *MARKS], ["run", "crest", "--out", "{out}", "--actors", "1000", *MARKS],
    U + ["--actors", "1000", *MARKS], S + ["--actors", "2", "--placement", "strict-spread", *MARKS],
    T + ["--workers", "2", "--placement", "strict-spread", *MARKS],
    U + ["--placement", "spread", *MARKS], D + ["--ratio", "0.01", "--seed", HUGE], O + ["--requests", HUGE],
    # ----- issue 30: tune spaces ------------------------------------------------------------------
    TUNE + ["--space", "{cfg:space_empty}"], TUNE + ["--space", "{cfg:space_base_list}"],
    TUNE + ["--space", "{cfg:space_nothing}"], TUNE + ["--space", "{bin}"], TUNE + ["--space", "{cfg:space_twice}"],
    TUNE + ["--space", "{cfg:space_many_unknown}"],
    # ----- issue 30: report on damaged summaries (nothing else to report) -----------------------------
    ["report", "{out}/null-wall"], ["report", "{out}/word-acc"], ["report", "{out}/list-summary"],
]

# Real processes: every job script, and a handful of `effray` commands.
PROCESSES = [
    ["jobs/train.py", "--lr", "nan", "--out", "{out}"],
    ["jobs/train.py", "--name", "../x", "--out", "{out}"],
    ["jobs/train.py", "--epochs", "abc"],
    ["jobs/coreset.py", "--fraction", "0", "--out", "{out}"],
    ["jobs/coreset.py", "--pretrain-epochs", "-2", "--out", "{out}"],
    ["jobs/lipt.py", "--shards", "200", "--out", "{out}"],
    ["jobs/lipt.py", "--density", "0", "--out", "{out}"],
    ["jobs/deltagrad.py", "train", "--lr", "nan", "--out", "{out}"],
    ["jobs/deltagrad.py", "delete", "{dg}", "--ratio", "0"],
    ["jobs/deltagrad.py", "nosuch"],
    ["effray", "train", "--lr", "nan", "--out", "{out}"],
    ["effray", "train", "--config", "{bin}", "--out", "{out}"],
    ["effray", "bench", "overhead", "--workers", "abc"],
    ["effray", "bench", "overhead", "--epochs", "1"],
    ["effray", "report", "{run}", "--save", "{ro}/t.parquet"],
    ["effray", "unlearn", "train", "--lr", "nan", "--out", "{out}"],
    ["effray", "train", "--model", "effray_no_such_plugin:make_net", "--out", "{out}"],
    ["effray", "train", "--workers", "1", "--storage", S3_CLOSED, "--out", "{out}"],  # and no AWS credentials
]


# Rows whose one line must also say what is wrong: (args, what the line contains).
CR = ["run", "crest", "--dataset", "digits", "--out", "{out}"]
SP = ["run", "sparse", "--out", "{out}"]
IB = ["run", "infobatch", "--out", "{out}"]
CORESET_FAST = C + ["--dataset", "digits", "--model", "logreg", "--epochs", "3", "--pretrain-epochs", "1"]
SAYS = [
    (T + ["--dataset", "imagenet22k"], "unknown dataset 'imagenet22k'"),
    (T + ["--model", "gpt5"], "unknown model 'gpt5'"),
    (T + ["--schedule", "triangle"], "'triangle'"),
    (T + ["--epochs", "0"], "epochs must be a positive integer"),
    (T + ["--batch-size", "0"], "batch-size must be a positive integer"),
    (T + ["--dataset", "cifar10", "--data-dir", "/no/such/dir"], "/no/such/dir"),
    (T + ["--config", "/no/such/file.yaml"], "cannot read config file"),
    (T + ["--out", "{file}"], "is a file, not a directory"),
    (T + ["--config", "{cfg:twice}"], "key epochs is given twice"),
    (T + ["--config", "{cfg:many_unknown}"], "unknown key(s) key0, key1, key10, key100, key1000, key1001, key1002, "
                                             "key1003, key1004, key1005 and 1990 more in config file"),
    (T + ["--name", "two\nlines"], "has a control character"),
    (T + ["--name", "x" * 256], "a directory name holds at most 255"),
    (T + ["--cpus-per-worker", "1"], "--cpus-per-worker sizes Ray Train workers: it needs --workers N"),
    (T + ["--placement", "spread"], "--placement spread places Ray Train workers or shard actors"),
    (C + ["--placement", "spread", "--selection", "uniform"], "it needs --workers N or --actors K"),
    (S + ["--placement", "spread"], "it needs --actors K"),
    (CR + ["--train-frac", "1.5"], "train-frac must be in"),
    (CR + ["--selection-method", "craig"], "is not one of"),
    (CR + ["--batch-size", "2000"], f"the training set has {DIGITS_TRAIN} examples; lower --batch-size"),
    (CR + ["--actors", "2", "--workers", "2"], "give one of them"),
    (CR + ["--selection-method", "random", "--reference-double-step"], "the random baseline steps once"),
    (CR + ["--no-overlap"], "--no-overlap is for --actors K"),
    (S + ["--method", "grand", "--dataset", "plugin_example.data:nan_inputs"], "non-finite values (NaN or inf)"),
    (T + ["--dataset", "plugin_example.data:one_class"], "a classifier needs at least two classes"),
    (CR + ["--drop-learned", "--min-train-size", "5000", "--random-subset-size", "0.1"],
     "larger than the training set"),
    (B + ["crest", "--save", "b", "--optimizers", "adam"], "unknown optimizer 'adam'"),
    (B + ["crest", "--save", "b", "--optimizers", ","], "--optimizers takes"),
    (B + ["crest", "--save", "b", "--variant", "epochs=3"], "--variant epochs: the bench sets it"),
    (B + ["crest", "--save", "b", "--seeds", "0"], "--seeds"),
    (B + ["crest", "--save", "b", "--actors", "-1"], "--actors must be >= 0"),
    (B + ["crest", "--save", "b", "--set", "momentum=0.5"], "the bench sets it"),
    (B + ["crest", "--save", "b", "--test-size", "0"], "--test-size must be >= 1"),
    (B + ["frontier", "--densities", "0"], "--densities takes comma-separated numbers in (0, 1]"),
    (B + ["frontier", "--label-noise", "1"], "--label-noise must be in [0, 1)"),
    (B + ["frontier", "--lr", "0.1,0.05"], "--lr takes one value here"),
    (B + ["frontier", "--methods", ","], "--methods takes comma-separated names"),
    (B + ["crest", "--datasets", ","], "--datasets takes comma-separated names"),
    (B + ["sparse", "--methods", " , "], "--methods takes comma-separated names"),
    (B + ["lipt", "--backends", "fast"], "unknown sparse backend 'fast'"),
    (CORESET_FAST + ["--fraction", "0"], "fraction must be in (0, 1], got 0"),
    (CORESET_FAST + ["--fraction", "1.5"], "fraction must be in (0, 1], got 1.5"),
    (CORESET_FAST + ["--selection", "kmeans"], "unknown selection method 'kmeans'"),
    (CORESET_FAST + ["--class-budget", "1000"], "budget 1000 is larger than class 0"),
    (CORESET_FAST + ["--budget", "99999"], "budget 99999 is larger than the dataset"),
    (CORESET_FAST + ["--selection", "glister", "--option", "eta"], "--option takes KEY=VALUE"),
    (CORESET_FAST + ["--selection", "craig", "--repeats", "3"], "--repeats is for el2n and grand; 'craig' uses one warm-up"),
    (CORESET_FAST + ["--selection", "craig", "--stratify", "ccs"], "craig returns no per-example scores"),
    (CORESET_FAST + ["--selection", "grand", "--ccs-beta", "0.1"], "--ccs-beta is for --stratify ccs"),
    (CORESET_FAST + ["--selection", "grand", "--stratify", "ccs", "--ccs-beta", "1"], "ccs-beta must be in [0, 1)"),
    (CORESET_FAST + ["--selection", "facility-location", "--option", "optimizer=greedy"], "optimizer"),
    (SP + ["--sparse", "--density", "0"], "density must be in (0, 1]"),
    (SP + ["--sparse", "--density", "1.5"], "density must be in (0, 1]"),
    (SP + ["--sparse", "--update-frequency", "0"], "update frequency must be >= 1"),
    (SP + ["--sparse", "--growth", "magic"], "'magic' is not one of 'random', 'gradient', 'momentum'"),
    (SP + ["--sparse", "--death", "threshold"], "'threshold' is not one of 'magnitude', 'SET'"),
    (SP + ["--agc", "--agc-sample", "0"], "AGC needs a snapshot gradient source"),
    (SP + ["--agc-gamma", "0.2"], "--agc-gamma needs --agc"),
    (SP + ["--agc", "--agc-sample", "100000"], "exceeds the training set"),
    (SP + ["--dense", "--density", "0.05"], "--density sets the sparse masks; --dense trains without them"),
    (SP + ["--dense", "--growth", "random"], "--growth sets the sparse masks"),
    (SP + ["--sparse-backend", "fast"], "'fast' is not one of 'masked', 'sparse', 'auto'"),
    (SP + ["--dense", "--sparse-backend", "sparse"], "--sparse-backend sets the sparse masks"),
    (IB + ["--prune-ratio", "1"], "prune-ratio must be in [0, 1), got 1"),
    (IB + ["--prune-ratio", "-0.1"], "prune-ratio must be in [0, 1), got -0.1"),
    (IB + ["--delta", "1.5"], "delta must be in [0, 1], got 1.5"),
    (IB + ["--delta", "nan"], "delta must be a finite number, got nan"),
    # issue 30
    (T + ["--model", "plugin_example.models:raises"], "its factory failed: RuntimeError: no weights file"),
    (T + ["--dataset", "plugin_example.data:exits"], "its factory failed: SystemExit: cannot find the data"),
    (T + ["--model", "plugin_example.exits:f"], "importing 'plugin_example.exits' failed: SystemExit"),
    (T + ["--model", "plugin_example.models:frozen"], "there is nothing to train"),
    (T + ["--model", "plugin_example.models:breaks_in_training"], "fails in a training step (train mode"),
    (T + ["--dataset", "plugin_example.data:labels_at_num_classes"], "train labels must be in [0, 2), found 2"),
    (T + ["--seed", HUGE], "does not fit a 64-bit integer"),
    (T + ["--seed", "4294967296"], "seed must be an integer in [0, 2**32)"),
    (T + ["--storage", "file:rel"], "File URI cannot be relative"),
    (TUNE + ["--space", "{cfg:space_empty}"], "is empty"),
    (TUNE + ["--space", "{cfg:space_base_list}"], "base: in"),
    (TUNE + ["--space", "{cfg:space_nothing}"], "sweeps nothing"),
    (TUNE + ["--space", "{bin}"], "is not a text file"),
    (TUNE + ["--space", "{cfg:space_twice}"], "key method is given twice"),
    (TUNE + ["--space", "{cfg:space_many_unknown}"], "and 490 more in"),
    (S + ["--actors", "1000", *MARKS], "--actors 1000 needs 0.05 CPU per actor"),
    (["report", "{out}/null-wall"], "wall_s is null, not a number of seconds"),
    (["report", "{out}/word-acc"], 'test_acc is "high", not a number'),
    # the benches' list flags, each refused before any data is loaded or anything trains
    (B + ["frontier", "--methods", "rs2,rs2"], "--methods names rs2 more than once"),  # crashed after all the training
    (B + ["frontier", "--fractions", "0.1,0.1"], "--fractions names 0.1 more than once"),
    (B + ["frontier", "--methods", ","], "--methods takes comma-separated names"),  # ran only the full-data row
    (B + ["frontier", "--lr", "0.1,0.2"], "--lr takes one value here"),  # named --lrlen, which frontier lacks
    (B + ["crest", "--datasets", ","], "--datasets takes comma-separated names"),  # a KeyError traceback
    (B + ["crest", "--fracs", "0.1,0.1"], "--fracs names 0.1 more than once"),
    (B + ["coreset", "--methods", "grand,grand"], "--methods names grand more than once"),
    (B + ["lipt", "--merge", "zeros,zeros"], "--merge names zeros more than once"),
    (B + ["sparse", "--setups", "digits:mlp,digits:mlp"], "--setups names digits:mlp more than once"),
    (B + ["overhead", "--workers", "1,1"], "--workers names 1 more than once"),
    (B + ["data", "--modes", ","], "--modes takes comma-separated names"),
    (B + ["sparse", "--density", "0.05,1.5"], "--density takes comma-separated densities in (0, 1]"),
]


# ----- issue 41: a refusal holds at every entry point; no flag silently changes what runs ---------
CRR = CR + ["--selection-method", "random"]
TS, TC = ["tune", "sparse", "--out", "{out}"], ["tune", "crest", "--out", "{out}"]
ISSUE_41 = [
    # a setting that acts only with another one, from a flag or a config file
    SP + ["--agc-alpha", "0.5"], SP + ["--agc-sample", "100"], SP + ["--config", "{cfg:gamma_no_agc}"],
    SP + ["--config", "{cfg:dense_density}"], SP + ["--dense", "--sparse-init", "uniform"],
    SP + ["--dense", "--death-rate", "0.3"], SP + ["--dense", "--update-frequency", "10"],
    SP + ["--dense", "--no-scale-init"], SP + ["--dense", "--redistribution", "nonzeros"],
    SP + ["--dense", "--death", "SET"], SP + ["--dense", "--density", "0.05", "--agc-gamma", "0.1"],
    CRR + ["--random-subset-size", "0.1"], CRR + ["--no-approx-moment"], CRR + ["--check-thresh-factor", "0.2"],
    CRR + ["--interval-mul", "2"], CRR + ["--num-minibatch-coreset", "3"], CRR + ["--loss0-on-subsets"],
    CRR + ["--batch-num-mul", "2"], CRR + ["--no-approx-with-coreset"], CRR + ["--actors", "2"],
    CRR + ["--no-overlap"], CR + ["--selection-method", "none", "--hessian-probes", "2"],
    CR + ["--selection-method", "none", "--drop-learned"], CR + ["--drop-interval", "5"],
    CR + ["--watch-interval", "3"], CR + ["--drop-thresh", "0.2"], CR + ["--min-train-size", "100"],
    CR + ["--config", "{cfg:random_subset}"], CR + ["--config", "{cfg:drop_interval}"],
    # select warms up and selects: the subset training's settings are not its own
    S + ["--epochs", "5"], S + ["--weighting", "loss"], S + ["--weight-cap", "2"], S + ["--workers", "2"],
    S + ["--method", "glister", "--reselect-every", "2", "--fraction", "0.3"], S + ["--warm-start", "0.5"],
    S + ["--config", "{cfg:select_weighting}"], S + ["--config", "{cfg:select_epochs}"],
    # a schedule whose selection rounds never come
    C + ["--selection", "glister", "--reselect-every", "30"], C + ["--config", "{cfg:reselect_never}"],
    C + ["--selection", "gradmatch", "--reselect-every", "5", "--epochs", "5"], L + ["--reselect", "30"],
    # values that make the run meaningless
    SP + ["--density", "0.0001", "--sparse-init", "uniform"], SP + ["--density", "1e-7"], L + ["--density", "1e-7"],
    CORESET_FAST + ["--selection", "grand", "--stratify", "ccs", "--ccs-beta", "0.5", "--budget", "1000"],
    CORESET_FAST + ["--selection", "grand", "--stratify", "ccs", "--ccs-beta", "0.5", "--class-budget", "100"],
    D + ["--ids", "{ids_noid}"], D + ["--ids", "{ids_noheader}"], A + ["--from", "{ids_noid}"],
    # bench --threads, on every bench that has it
    *[B + [bench, "--threads", n] for bench in ("coreset", "crest", "deltagrad", "frontier", "lipt", "overhead",
                                                 "selection", "sparse") for n in ("-1", "0")],
    # every list flag refuses an empty item
    B + ["frontier", "--methods", "rs2,,uniform"], B + ["frontier", "--fractions", "0.1,,0.3"],
    B + ["sparse", "--backends", "masked,"], B + ["lipt", "--merge", "zeros,"], B + ["crest", "--fracs", "0.1,,0.3"],
    B + ["overhead", "--workers", "1,,2"], B + ["data", "--sizes", "10,,20"], B + ["coreset", "--fractions", "0.1,"],
    B + ["deltagrad", "--ratios", "0.01,"], B + ["selection", "--methods", ",uniform"],
    B + ["crest", "--datasets", "digits,"], B + ["overhead", "--placements", "pack,"], T + ["--lr", "0.1,,0.05"],
    T + ["--milestones", "1,", "--schedule", "multistep"],
    # bench outputs checked as --out is, before any work
    B + ["sparse", "--save", ""], B + ["coreset", "--save", ""], B + ["selection", "--save", ""],
    B + ["frontier", "--save", "/dev/null"], B + ["crest", "--save", "/dev/null"], B + ["lipt", "--save", "/proc/x"],
    # a bench flag for no method named, a --set a row cannot use
    B + ["sparse", "--methods", "dense,SET-ITOP", "--agc-gamma", "0.3"],
    B + ["sparse", "--methods", "dense", "--update-frequency", "10"], B + ["crest", "--set", "drop_interval=5"],
    # tune spaces: every choice value and both ends of every range, before Ray starts
    TS + ["--space", "{cfg:space_gamma_no_agc}"], TS + ["--space", "{cfg:space_pair}"], TS + ["--set", "agc=false"],
    TC + ["--space", "{cfg:space_one_bad_choice}"], TC + ["--space", "{cfg:space_baseline_knob}"],
    TC + ["--set", "selection_method=random"], TUNE + ["--space", "{cfg:space_bad_range_end}"],
    TUNE + ["--space", "{cfg:space_grid_bad}"], TUNE + ["--space", "{cfg:space_randint_end}"],
    ["tune", "coreset", "--out", "{out}", "--space", "{cfg:space_reselect_never}"],
]
BAD += ISSUE_41
SAYS += [
    (SP + ["--config", "{cfg:dense_density}"], "--density sets the sparse masks; --dense trains without them"),
    (SP + ["--config", "{cfg:gamma_no_agc}"], "--agc-gamma needs --agc"),
    (CRR + ["--random-subset-size", "0.1"], "--random-subset-size is CREST's: the random and none baselines"),
    (CR + ["--drop-interval", "5"], "--drop-interval acts only when learned examples are dropped: add --drop-learned"),
    (S + ["--config", "{cfg:select_epochs}"], "--epochs trains on the subset; select only selects"),
    (S + ["--method", "glister", "--reselect-every", "2"], "No such option '--reselect-every'"),
    (C + ["--selection", "glister", "--reselect-every", "30"], "glister would never select again"),
    (SP + ["--density", "0.0001", "--sparse-init", "uniform"], "the smallest density that keeps one in every layer "
                                                               "is 0.00017"),
    (CORESET_FAST + ["--selection", "grand", "--stratify", "ccs", "--ccs-beta", "0.5", "--budget", "1000"],
     "--ccs-beta 0.5 drops more than the 0.258 of the data --budget 1000 leaves out"),
    (D + ["--ids", "{ids_noheader}"], "needs a column named 'id'"),
    (B + ["sparse", "--threads", "-1"], "must be >= 1"),
    (B + ["frontier", "--methods", "rs2,,uniform"], "--methods 'rs2,,uniform' has an empty item"),
    (B + ["sparse", "--save", ""], "--save is empty"),
    (B + ["frontier", "--save", "/dev/null"], "is a device or special file"),
    (B + ["sparse", "--methods", "dense,SET-ITOP", "--agc-gamma", "0.3"], "none of --methods 'dense,SET-ITOP' uses"),
    (TS + ["--space", "{cfg:space_pair}"], "the trial agc=False, agc_gamma=0.3 is invalid: --agc-gamma needs --agc"),
    (TUNE + ["--space", "{cfg:space_bad_range_end}"], "momentum=1.0 is invalid: momentum must be in [0, 1)"),
]
SAYS += [  # precision and memory format (#38), time-to-accuracy
    (T + ["--precision", "fp16"], "'fp16'"),
    (T + ["--memory-format", "nhwc"], "'nhwc'"),
    (T + ["--compile", "yes"], "'yes'"),
    (T + ["--config", "{cfg:amp_word}"], "amp must be true or false, got 'yes'"),
    (T + ["--config", "{cfg:precision_word}"], "unknown precision 'half'"),
    (T + ["--target-acc", "1.5"], "target-acc must be a test accuracy in (0, 1], got 1.5"),
    (T + ["--target-acc", "0"], "target-acc must be a test accuracy in (0, 1], got 0"),
    (["report", "{run}", "--target-acc", "2"], "2"),
    (B + ["precision", "--seeds", "-1"], "--seeds must be >= 0"),
    (B + ["precision", "--setups", "digits"], "--setups takes DATASET:MODEL pairs"),
    (B + ["precision", "--step-repeats", "0"], "--step-repeats must be >= 1"),
    # channels_last with no convolution to lay out would change nothing: refused, in every recipe
    (T + ["--model", "mlp", "--memory-format", "channels_last"], "model mlp has none; use auto or contiguous"),
    (["run", "infobatch", "--out", "{out}", "--model", "logreg", "--memory-format", "channels_last"],
     "model logreg has none"),
    (["run", "sparse", "--out", "{out}", "--memory-format", "channels_last"], "model mlp has none"),
    # a stack's member left empty; an added algorithm's setting in a sweep says how to add it
    (B + ["frontier", "--methods", "rs2+"], "--methods 'rs2+' has an empty stack member"),
    (B + ["frontier", "--methods", "+rigl-itop"], "has an empty stack member"),
    (["tune", "infobatch", "--out", "{out}", "--set", "density=0.1"],
     "density is a setting of sparse: it needs --set stack=sparse"),
]

SAYS += [  # issue 48: a repeated list flag adds to the list, with the comma form's duplicate check
    (T + ["--with", "infobatch", "--with", "infobatch"], "--with names infobatch twice"),
    (["run", "label-smoothing", "--out", "{out}", "--smoothing", "1"], "smoothing must be in [0, 1), got 1"),
    (T + ["--with", "label-smoothing", "--smoothing", "nan"], "smoothing must be a finite number, got nan"),
    (T + ["--smoothing", "0.1"], "--smoothing is a setting of label-smoothing: it needs --with label-smoothing"),
    (["run", "ema", "--out", "{out}", "--ema-half-life", "-1"], "ema-half-life must be >= 0, got -1"),
    (T + ["--ema-half-life", "1"], "--ema-half-life is a setting of ema: it needs --with ema"),
    (["run", "selective-backprop", "--out", "{out}", "--sb-keep", "0"], "sb-keep must be in (0, 1], got 0"),
    (["run", "selective-backprop", "--out", "{out}", "--sb-start", "0.8", "--sb-end", "0.5"],
     "sb-start and sb-end must satisfy 0 <= start <= end <= 1, got start 0.8 and end 0.5"),
    (T + ["--with", "selective-backprop", "--sb-end", "1.5"], "got start 0.5 and end 1.5"),
    (["run", "selective-backprop", "--out", "{out}", "--sb-interrupt", "-1"], "sb-interrupt must be >= 0, got -1"),
    (T + ["--sb-keep", "0.3"], "--sb-keep is a setting of selective-backprop: it needs --with selective-backprop"),
    (["run", "layer-freezing", "--out", "{out}", "--freeze-start", "1.5"], "freeze-start must be in [0, 1], got 1.5"),
    (["run", "layer-freezing", "--out", "{out}", "--freeze-level", "-0.1"], "freeze-level must be in [0, 1], got -0.1"),
    (T + ["--with", "layer-freezing", "--freeze-level", "nan"], "freeze-level must be a finite number, got nan"),
    (T + ["--freeze-start", "0.3"], "--freeze-start is a setting of layer-freezing: it needs --with layer-freezing"),
    (T + ["--freeze-level", "0.5"], "--freeze-level is a setting of layer-freezing: it needs --with layer-freezing"),
    (["run", "layer-freezing", "--out", "{out}", "--workers", "2"], "layer-freezing trains in one process"),
    (["run", "sparse", "--out", "{out}", "--agc", "--with", "layer-freezing"],
     "layer-freezing does not stack with --agc"),
    (["run", "progressive-resizing", "--out", "{out}", "--resize-initial-scale", "0"],
     "resize-initial-scale must be in (0, 1], got 0"),
    (T + ["--with", "progressive-resizing", "--model", "resnet20", "--resize-delay", "2"],
     "resize-delay must be in [0, 1], got 2"),
    (["run", "progressive-resizing", "--out", "{out}", "--resize-finetune", "0.6"],
     "resize-delay + resize-finetune must be at most 1 (fractions of one training), got 0.5 + 0.6"),
    (["run", "progressive-resizing", "--out", "{out}", "--resize-increment", "0"],
     "resize-increment must be a positive integer, got 0"),
    (["run", "progressive-resizing", "--out", "{out}", "--resize-mode", "nearest"], "'nearest'"),
    (T + ["--resize-initial-scale", "0.5"],
     "--resize-initial-scale is a setting of progressive-resizing: it needs --with progressive-resizing"),
    (T + ["--with", "progressive-resizing"], "progressive-resizing: model mlp cannot take 4x4 images"),
    (["run", "progressive-resizing", "--out", "{out}", "--flat"], "the data's samples have shape (64,), not (C, H, W)"),
    (["run", "proxy-selection", "--out", "{out}", "--proxy-keep", "0"], "proxy-keep must be in (0, 1], got 0"),
    (["run", "proxy-selection", "--out", "{out}", "--proxy-start", "1.5"], "proxy-start must be in [0, 1], got 1.5"),
    (["run", "proxy-selection", "--out", "{out}", "--proxy-model", "nope"], "proxy-model: unknown model 'nope'"),
    (["run", "proxy-selection", "--out", "{out}", "--dataset", "synthetic", "--shape", "7", "--proxy-model", "lenet5"],
     "proxy-model: model 'lenet5' needs image input"),
    (["run", "proxy-selection", "--out", "{out}", "--workers", "2"], "proxy-selection trains its proxy on each rank's"),
    (T + ["--proxy-keep", "0.5"], "--proxy-keep is a setting of proxy-selection: it needs --with proxy-selection"),
    (T + ["--proxy-model", "logreg"], "--proxy-model is a setting of proxy-selection: it needs --with proxy-selection"),
    (C + ["--selection", "grand", "--selection-model", "nope"], "unknown model 'nope'"),  # issue 47: SVP
    (C + ["--selection", "uniform", "--selection-model", "mlp"],
     "--selection-model is for selectors that score with a model; 'uniform' does not use one"),
    (C + ["--selection", "glister", "--selection-model", "mlp", "--reselect-every", "2"],
     "--selection-model warms up a proxy once; --reselect-every selects with the model being trained"),
    (["run", "lipt", "--out", "{out}", "--selection-model", "nope"], "unknown model 'nope'"),
    (B + ["coreset", "--selection-models", "nope"], "nope"),
    (B + ["coreset", "--model", "lenet5", "--selection-models", "mlp,lenet5"],
     "--selection-models names --model lenet5 itself"),
    (C + ["--selection", "grand", "--dataset", "synthetic", "--shape", "7", "--selection-model", "lenet5"],
     "needs image input"),
    (T + ["--with", "coreset"], "--with coreset: coreset does not stack: it selects its subset in stages"),
    (["run", "lipt", "--out", "{out}", "--with", "crest"], "crest and this method both set actors"),
    (C + ["--with", "sparse", "--with", "sparse"], "--with names sparse twice"),
    (["run", "crest", "--out", "{out}", "--with", "sparse", "--with", "infobatch"], "one batch plan"),
    (T + ["--lr", "0.1", "--lr", "0.05"], "several --lr values need --lrlen"),
    (T + ["--lr", "0.1", "--lr", "0.05", "--lrlen", "1"], "--lrlen needs one positive epoch count per --lr value"),
    (B + ["frontier", "--methods", "rs2", "--methods", "rs2"], "--methods names rs2 more than once"),
    (B + ["frontier", "--fractions", "0.1", "--fractions", "0.1"], "--fractions names 0.1 more than once"),
    (B + ["precision", "--setups", "digits:mlp", "--setups", "digits:mlp"], "--setups names digits:mlp more than once"),
    (B + ["sparse", "--backends", "masked", "--backends", "masked"], "--backends names masked more than once"),
    (B + ["coreset", "--methods", "uniform", "--methods", "uniform"], "--methods names uniform more than once"),
]

NAN_TARGET = "target-acc must be a test accuracy in (0, 1], got nan"
SAYS += [  # issue 48: one check per value, whatever the entry point
    (B + ["frontier", "--target-acc", "nan"], NAN_TARGET),
    (B + ["frontier", "--target-acc", "0"], "target-acc must be a test accuracy in (0, 1], got 0"),
    (B + ["frontier", "--target-acc", "inf"], "got inf"),
    (["report", "{run}", "--target-acc", "nan"], NAN_TARGET),
    (B + ["frontier", "--budgets", "0"], "--budgets takes comma-separated numbers in (0, 1]"),  # issue 45
    (B + ["frontier", "--budgets", "0.5", "--budgets", "0.5"], "--budgets names 0.5 more than once"),
    (["report", "{run}", "--markdown", "--columns", "method"], "--markdown renders one stored table: give one "),
    (["report", "{run}", "--target-acc", "-0.5"], "got -0.5"),
    (["report", "{run}", "--target-acc", "inf", "--no-plot"], "got inf"),
    (T + ["--target-acc", "nan"], "target-acc must be"),
    (C + ["--target-acc", "1.01"], "target-acc must be a test accuracy in (0, 1], got 1.01"),
    (TUNE + ["--space", "{cfg:space_cl_base}"], "the space file's base is invalid: memory-format channels_last lays "
                                                "out convolution weights, and model mlp has none"),
    (TUNE + ["--space", "{cfg:space_cl_trial}"], "the trial memory_format=channels_last is invalid"),
    (TUNE + ["--space", "{cfg:space_nan_target}"], "the space file's base is invalid: target-acc"),
    (TUNE + ["--set", "memory_format=channels_last", "--set", "model=mlp"], "model mlp has none"),
    (T + ["--config", "{cfg:stack_mapping}"], "stack must be a list of names, got {'sparse': 1}"),
    (T + ["--config", "{cfg:stack_number}"], "stack must be a list of names, got 3"),
    (T + ["--config", "{cfg:stack_numbers}"], "stack must be a list of names, got [1, 2]"),
    (T + ["--config", "{cfg:stack_twice}"], "stack_twice.yaml': stack names sparse twice"),  # issue 65: not --with
    (T + ["--config", "{cfg:amp_bf16}"], "amp: false and precision: bf16 contradict each other"),
    (T + ["--config", "{cfg:amp_auto}"], "amp: false and precision: auto contradict each other"),
    (T + ["--config", "{cfg:amp_fp32}"], "amp: true and precision: fp32 contradict each other"),
    (C + ["--config", "{cfg:amp_bf16}"], "contradict each other"),
    (T + ["--config", "{cfg:cl_lenet}", "--model", "mlp"], "memory-format channels_last from config file"),
    (T + ["--config", "{cfg:cl_lenet}", "--model", "logreg"], "records what --memory-format auto chose for its "
                                                              "model lenet5) lays out convolution weights, and "
                                                              "model logreg has none"),
    (S + ["--model", "mlp", "--memory-format", "channels_last"], "model mlp has none"),
    (["run", "crest", "--out", "{out}", "--model", "logreg", "--memory-format", "channels_last"], "has none"),
    (T + ["--model", "mlp", "--memory-format", "channels_last", *MARKS], "model mlp has none"),  # before the data
]
SAYS += [  # issue 48: a setting that would do nothing is refused, as select refuses --epochs
    (S + ["--target-acc", "0.5"], "No such option '--target-acc'"),
    (S + ["--config", "{cfg:select_target}"], "--target-acc times the subset's training to an accuracy; select only "
                                              "selects (use `effray run coreset`)"),
]
SAYS += [  # issue 48: words that mislead
    (["report", "{run}", "--save", "{file}/x.csv"], "/a-file/x.csv': "),
    (["report", "{run}", "--save", "{file}/x.csv", "--no-plot"], "a-file' is a file, not a directory"),
    (B + ["frontier", "--save", "{file}/x"], "a-file' is a file, not a directory"),
    (B + ["sparse", "--save", "{file}/x/y"], "a-file' is a file, not a directory"),
    (["report", "{run}", "--save", "/proc/x.csv"], "--save '/proc/x.csv': directory '/proc' is not writable"),
    (B + ["frontier", "--save", "/proc/x"], "--save '/proc/x': directory '/proc' is not writable"),
    (B + ["frontier", "--methods", "crest+infobatch"], "--methods crest+infobatch: one run takes one batch plan"),
    (B + ["frontier", "--methods", "infobatch+infobatch"], "--methods infobatch+infobatch: this method is infobatch"),
    (B + ["frontier", "--methods", "rs2+rigl-itop+a-rigl-itop"], "--methods rs2+rigl-itop+a-rigl-itop: names sparse "
                                                                  "twice"),
    (T + ["--config", "{cfg:stack_empty}"], "stack ['sparse', ''] has an empty member: name each algorithm"),
    (T + ["--config", "{cfg:stack_empty_text}"], "stack ['sparse', ''] has an empty member"),
    (U + ["--precision", "bf16"], "No such option '--precision'"),
    (U + ["--memory-format", "contiguous"], "No such option '--memory-format'"),
]
SAYS += [  # issue 48: a row for every flag the CLI has (test_every_flag_of_every_command_has_a_row)
    (B + ["overhead", "--cli-runs", "-1"], "--cli-runs must be >= 0, got -1"),
    (B + ["deltagrad", "--gd-epochs", "-1"], "--gd-epochs must be >= 0, got -1"),
    (B + ["deltagrad", "--gd-init", "-1"], "--gd-init must be >= 0, got -1"),
    (B + ["deltagrad", "--gd-ratio", "2"], "--gd-ratio must be in (0, 1), got 2"),
    (B + ["deltagrad", "--online-baseline-every", "0"], "--online-baseline-every must be >= 1, got 0"),
    (B + ["deltagrad", "--online-requests", "-1"], "--online-requests must be >= 0, got -1"),
    (B + ["deltagrad", "--repeat", "0"], "--repeat must be >= 1, got 0"),
    (T + ["--image-size", "0"], "image-size must be a positive integer, got 0"),
    (T + ["--image-size", "32"], "--image-size is a setting of --dataset imagefolder; digits does not use it"),
    (T + ["--num-classes", "5"], "--num-classes is a setting of --dataset synthetic; digits does not use it"),
    (C + ["--shape", "64"], "--shape is a setting of --dataset synthetic; digits does not use it"),
    (T + ["--dataset", "synthetic", "--num-classes", "1"], "synthetic num_classes must be an integer >= 2, got 1"),
    (T + ["--dataset", "synthetic", "--shape", "3x0x32"], "synthetic shape must be D (features) or C,H,W"),
    (SP + ["--multiplier", "0"], "multiplier must be a positive integer, got 0"),
    (B + ["sparse", "--target", "2"], "target must be a test accuracy in (0, 1], got 2"),
    (B + ["sparse", "--target-of-dense", "nan"], "target-of-dense must be a test accuracy in (0, 1], got nan"),
    (TUNE + ["--search", "bayes"], "'bayes' is not one of 'random', 'grid'"),
    (T + ["--wandb-project", "a/b"], "wandb-project 'a/b' is not a W&B project name"),
    (["run", "crest", "--out", "{out}", "--wandb-project", "x:y"], "wandb-project 'x:y' is not a W&B project name"),
    (B + ["deltagrad", "--add-ratio", "-1"], "--add-ratio must be in [0, 1), got -1"),
    (B + ["frontier", "--add", "nope"], "'nope' is not 'deltagrad'"),
    (B + ["selection", "--block-budget", "0"], "--block-budget must be >= 1, got 0"),
    (B + ["selection", "--block-size", "0"], "--block-size must be >= 1, got 0"),
    (B + ["selection", "--blocks", "0"], "--blocks must be >= 1, got 0"),
    (L + ["--bn-samples", "-1"], "bn-samples must be >= 1, got -1"),
    (TUNE + ["--space", "{cfg:space_stack_twice}"], "base: stack names sparse twice: the method 'infobatch+sparse' "
                                                    "names it already"),
    (TUNE + ["--space", "{cfg:space_stack_mapping}"], "stack must be a list of names, got {'sparse': 1}"),
    (B + ["defaults", "--models", "nope"], "unknown model 'nope'"),
    (B + ["defaults", "--seeds", "0,-1"], "--seeds"),
    (B + ["defaults", "--bar", "1.5"], "--bar must be in (0, 1], got 1.5"),
    (B + ["defaults", "--lr", "-1"], "lr must be one or more positive finite numbers"),
    (B + ["defaults", "--dataset", "nope"], "unknown dataset 'nope'"),
    (B + ["defaults", "--save", "{ro}/d"], "--save"),
    (B + ["defaults", "--dataset", "mnist", "--data-dir", "/no/such/dir"], "data directory '/no/such/dir' does not exist"),
    (["write-mnist", "{out}", "--dataset", "synthetic"], "MNIST's files hold one-channel images"),
    (["write-mnist", "{out}", "--dataset", "nope"], "unknown dataset 'nope'"),
    (["write-mnist", "{out}", "--train-size", "0"], "train_size must be an integer >= 1, got 0"),
    (["write-mnist", "{out}", "--test-size", "-3"], "test_size must be an integer >= 1, got -3"),
    (["write-mnist", "{out}", "--dataset", "digits", "--train-size", "10"], "digits has a fixed size"),
    (["write-mnist", "{out}", "--seed", "-1"], "'--seed': -1 is not in the range"),
    (["write-mnist", "{ro}/m"], "is not writable"),
    (["write-mnist", "{file}"], "is a file, not a directory"),
    (["report", "x", "--rows", "method:full"], "give one .parquet file"),
]

SAYS += [  # issue 65: bad files are one line, not a pyarrow traceback
    (["report", "--markdown", "{pq_bad}"], "corrupt.parquet' as a Parquet table (Could not open Parquet input "
                                           "source"),
    (["report", "--markdown", "{pq_empty}"], "empty.parquet' as a Parquet table (Could not open Parquet input "
                                             "source"),
    (["report", "--markdown", "{out}/no-such.parquet", "--columns", "method"], "no-such.parquet' does not exist"),
    (["report", "--markdown", "{out}"], "--markdown renders one stored table: give one .parquet file"),
    (["report", "{pq_bad}"], "corrupt.parquet' is a file, not a run directory (a stored table: effray report "
                             "--markdown "),
    (["report", "{run}", "{file}", "--no-plot"], "a-file' is a file, not a run directory"),
    (["write-mnist", ""], "write-mnist DIRECTORY is empty: name the directory to write into"),  # not the current one
]

SAYS += [  # issue 71: the frontier on Ray and its store
    (B + ["frontier", "--slots", "0"], "--slots must be"),
    (B + ["frontier", "--points-per-gpu", "0"], "--points-per-gpu must be"),
    (B + ["frontier", "--storage", "nosuch://bucket/x"], "--storage 'nosuch://bucket/x' cannot be opened"),
    (B + ["frontier", "--render", "--save", "{work}/never-ran"], "--render: no frontier is stored in"),
    (B + ["frontier", "--render", "--time-alone"], "--render trains nothing: leave out --time-alone"),
]
SAYS += [  # issue 77: seeds until decided (issue 82: the real-data presets' default)
    (B + ["frontier", "--max-seeds", "2"], "--max-seeds must be at least --seeds (3), got 2"),
    (B + ["frontier", "--max-seeds", "5", "--slots", "2"], "judges each look on seconds timed alone: leave out --slots 2"),
    (B + ["frontier", "--setup", "fashion-mnist:mlp", "--slots", "2"], "the preset's default) judges each look on "
                                                                       "seconds timed alone"),
    (B + ["frontier", "--max-seeds", "5", "--render", "--save", "{work}/never-ran"], "--render: no frontier is stored"),
]
SUMMARY = REPO / "docs/results/frontier-mlp-linear-summary.parquet"  # a stored frontier summary
SAYS += [  # issue 62: the frontier's budgets at few epochs; the verdicts table's stored summaries
    (B + ["frontier", "--epochs", "1"], "--budgets 0.1,0.2,0.3,0.5,0.6,0.7,0.8,1 at --epochs 1 leave the budget curve "
                                        "one point (every budget rounds to the whole run): give more --epochs"),
    (B + ["frontier", "--setup", "fashion-mnist:mlp", "--epochs", "1", "--budgets", "0.5,1"], "leave the budget curve "
                                                                                              "one point"),
    (B + ["frontier", "--methods", "rs2,infobatch", "--selection-models", "lenet5"], "--selection-models lenet5: no "
                                                                                      "method of --methods scores with "
                                                                                      "a model"),
    (B + ["frontier", "--first-seed", "-1"], "--first-seed must be a seed in [0, 2**32), got -1"),
    (B + ["frontier", "--first-seed", str(2**32 - 2), "--seeds", "3"], "--seeds 3 runs seeds 4294967294 .. "
                                                                       "4294967296; a seed must be below 2**32"),
    (B + ["frontier", "--merge", "{pq_bad}"], "--merge: cannot read"),
    (B + ["frontier", "--merge", "{out}/no-such.parquet"], "--merge: '"),
    (B + ["frontier", "--merge", "{pq_bad}", "--workers", "2"], "--merge reads stored rows and trains nothing: leave "
                                                                "out --workers"),
    (B + ["verdicts"], "give at least one SETUP=SUMMARY.parquet"),
    (B + ["verdicts", "{pq_bad}"], "setups take SETUP=SUMMARY.parquet"),
    (B + ["verdicts", "a={pq_bad}"], "corrupt.parquet' as a Parquet table"),
    (B + ["verdicts", "a={out}/no-such.parquet"], "no-such.parquet' does not exist"),
    (B + ["verdicts", "a={pq_bad}", "a={pq_bad}"], "setup 'a' is given twice"),
    (B + ["verdicts", f"a={SUMMARY}", "--save", "{file}/x"], "a-file' is a file, not a directory"),
    (B + ["verdicts", f"a={SUMMARY}", "--wandb", "loud"], "'loud' is not one of"),
    (B + ["verdicts", f"a={REPO}/docs/results/precision-avx2.parquet"], "is not a frontier summary: no column method"),
]

LF, EMA, PR = ["run", "layer-freezing", "--out", "{out}"], ["run", "ema", "--out", "{out}"], \
    ["run", "progressive-resizing", "--out", "{out}"]
SAYS += [  # issue 65: one thread count for both placements; settings too small to act
    (T + ["--threads", "0"], "threads must be an integer in [1, 1024], got 0"),
    (T + ["--threads", "1025"], "threads must be an integer in [1, 1024], got 1025"),
    (C + ["--threads", "-1"], "threads must be an integer in [1, 1024], got -1"),
    (T + ["--config", "{cfg:threads_zero}"], "threads must be an integer in [1, 1024], got 0"),
    (TUNE + ["--space", "{cfg:space_threads}"], "space entry 'threads' sweeps threads=0, but each Tune trial sets "
                                                "threads itself"),
    # a trial's own threads and workers (TRIAL_SETTINGS) are refused, not silently overridden
    (TUNE + ["--space", "{cfg:space_base_threads}"], "the space file's base sets threads=4, but each Tune trial sets "
                                                     "threads itself (one process, one torch thread, no Ray Train "
                                                     "workers): remove it; for more CPUs at once, run more trials at "
                                                     "once (--max-concurrent N, default one per CPU)"),
    (TUNE + ["--space", "{cfg:space_base_workers}"], "the space file's base sets workers=2, but each Tune trial sets "
                                                     "workers itself"),
    (TUNE + ["--space", "{cfg:space_sweep_workers}"], "space entry 'workers' sweeps workers=2, but each Tune trial"),
    (TUNE + ["--set", "threads=8"], "--set threads=8, but each Tune trial sets threads itself"),
    (TUNE + ["--set", "workers=1"], "--set workers=1, but each Tune trial sets workers itself"),
    (["tune", "crest", "--out", "{out}", "--set", "actors=2"],
     "--set actors=2, but each Tune trial sets actors itself (its selection's gradients in its own process, no shard "
     "actors): remove it; for more CPUs"),
    (TUNE + ["--set", "storage=/tmp/trials"], "--set storage=/tmp/trials, but each Tune trial sets storage itself "
                                              "(the trials are stored where `effray tune --storage` says): remove it; "
                                              "give --storage to effray tune"),
    # the trial's own values are no override: the base's other values are checked
    (TUNE + ["--space", "{cfg:space_own_values}"], "the space file's base is invalid: epochs must be"),
    (LF + ["--epochs", "2"], "layer-freezing at --epochs 2 and --freeze-start 0.5 freezes no layer: no epoch starts "
                             "after 0.5 of training (plain training)"),
    (LF + ["--config", "{cfg:freeze_short}"], "layer-freezing at --epochs 2 and --freeze-start 0.5 freezes no layer"),
    (T + ["--with", "layer-freezing", "--epochs", "1", "--freeze-start", "0"], "--epochs 1 and --freeze-start 0 "
                                                                               "freezes no layer"),
    (LF + ["--epochs", "3"], "freezes none of model mlp's 2 layers: its last epoch freezes a fraction 0.333 of them"),
    (TUNE + ["--space", "{cfg:space_freeze_short}"], "the space file's base is invalid: layer-freezing at --epochs 2"),
    (EMA + ["--ema-half-life", "1e12"], "ema-half-life 1e+12 is not below the training's 30 epoch(s): the final "
                                        "average would keep 100% of the initial weights"),
    (EMA + ["--config", "{cfg:ema_forever}"], "ema-half-life 1e+12 is not below"),
    (T + ["--with", "ema", "--epochs", "2", "--ema-half-life", "2"], "would keep 50% of the initial weights"),
    (TUNE + ["--space", "{cfg:space_ema_forever}"], "the trial ema_half_life=3 is invalid: ema-half-life 3 is not"),
    (B + ["precision", "--epochs", "1"], "--epochs 1: the training comparison times the epochs after the first"),
    (PR + ["--resize-increment", "64"], "--resize-increment 64 keeps the 8x8 images at full size"),
    (PR + ["--config", "{cfg:resize_whole}"], "keeps the 8x8 images at full size"),
    (PR + ["--resize-initial-scale", "0.9"], "--resize-initial-scale 0.9 and --resize-increment 4 keeps the 8x8 "
                                             "images at full size"),
    (TUNE + ["--space", "{cfg:space_resize_whole}"], "the trial resize_increment=64 is invalid"),
]

# ----- issue 65: every integer fits 64 bits and a sane bound; each choice of a space checked as typed;
# no flag silently ignored; words that do not mislead ---------------------------------------------------
SPACE_65 = {
    "space_stack_unknown": "method: train\nspace: {stack: {choice: [[sparse], [bogus]]}}\n",
    "space_stack_twice_choice": "method: train\nspace: {stack: {choice: [[sparse, sparse]]}}\n",
    "space_stack_pair": "method: train\nspace: {stack: {choice: [[crest, infobatch]]}}\n",
    "space_resize_mlp": "method: train\nbase: {model: mlp}\nspace: {stack: {choice: [[progressive-resizing]]}}\n",
    "stack_unknown": "stack: [bogus]\n",
    "max_failures": "max_failures: 3\n",
    "huge_train_size": "dataset: synthetic\ntrain_size: 1000000000000\n",
}
CONFIGS.update(SPACE_65)
SAYS += [
    (["write-mnist", "{out}", "--train-size", HUGE], "--train-size 99999999999999999999 does not fit a 64-bit"),
    (["write-mnist", "{out}", "--train-size", "1000000000000"], "this machine has"),
    (["write-mnist", "{out}", "--test-size", HUGE], "does not fit a 64-bit integer"),
    (T + ["--dataset", "synthetic", "--train-size", "1000000000000"], "this machine has"),
    (T + ["--config", "{cfg:huge_train_size}"], "this machine has"),
    (B + ["frontier", "--seeds", HUGE], "--seeds 99999999999999999999 does not fit a 64-bit integer"),
    (B + ["frontier", "--seeds", "4294967297"], "a seed must be below 2**32"),
    (B + ["frontier", "--workers", HUGE], "does not fit a 64-bit integer"),
    (B + ["frontier", "--train-size", HUGE], "does not fit a 64-bit integer"),
    (B + ["crest", "--seeds", HUGE], "--seeds 99999999999999999999 does not fit a 64-bit integer"),
    (B + ["crest", "--seed", "4294967290", "--seeds", "10"], "at most 6 seeds from 4294967290"),
    (B + ["precision", "--seeds", "4294967297"], "a seed must be below 2**32"),
    (B + ["coreset", "--repeats", HUGE], "does not fit a 64-bit integer"),
    (B + ["overhead", "--workers", f"1,{HUGE}"], "--workers 99999999999999999999 does not fit"),
    (B + ["deltagrad", "--threads", HUGE], "--threads 99999999999999999999 does not fit"),
    (B + ["deltagrad", "--lrlen", HUGE], "does not fit a 64-bit integer"),
    (TUNE + ["--num-samples", HUGE], "--num-samples 99999999999999999999 does not fit"),
    (TUNE + ["--max-concurrent", HUGE], "does not fit a 64-bit integer"),
    (T + ["--lr", "0.1", "--lrlen", HUGE], "--lrlen 99999999999999999999 does not fit"),
    (["unlearn", "online", "{dg}", "--requests", HUGE], "does not fit a 64-bit integer"),
    # item 2: each choice of a space, before Ray starts
    (TUNE + ["--space", "{cfg:space_stack_unknown}"], "the trial stack=['bogus'] is invalid: stack bogus: the "
                                                      "algorithms that stack are"),  # not --with, a flag it lacks
    (TUNE + ["--space", "{cfg:space_stack_twice_choice}"], "invalid: stack names sparse twice"),
    (TUNE + ["--space", "{cfg:space_stack_pair}"], "one run takes one batch plan"),
    (TUNE + ["--space", "{cfg:space_resize_mlp}"], "progressive-resizing: model mlp cannot take 4x4 images"),
    # item 7: flags that would do nothing
    (B + ["coreset", "--selection-models", "mlp", "--model", "lenet5", "--methods", "uniform,rs2"],
     "none of --methods uniform,rs2 scores with a model"),
    (B + ["coreset", "--selection-models", ""], "--selection-models takes comma-separated names"),
    (B + ["frontier", "--selection-models", ""], "is not a comma-separated list of names"),
    (T + ["--max-failures", "3"], "--max-failures restarts Ray Train workers from their last checkpoint: it needs "
                                  "--workers N"),
    (S + ["--max-failures", "3"], "it needs a method that trains on Ray Train workers"),
    (C + ["--config", "{cfg:max_failures}"], "--max-failures restarts Ray Train workers"),
    (B + ["crest", "--variant", "hessian_probes=2", "--variant", "hessian_probes=2"],
     "--variant names hessian_probes=2 more than once"),
    (B + ["sparse", "--save", "{out}/existing/metrics"], "metrics.parquet' exists (an earlier bench's table)"),
    # item 8: words that mislead
    (SP + ["--with", "lipt"], "effray run lipt --with label-smoothing"),
    (T + ["--config", "{cfg:stack_unknown}"], "stack_unknown.yaml': stack bogus: the algorithms that stack are"),
    (C + ["--selection", "grand", "--selection-model", "bogus"], "--selection-model: unknown model 'bogus'"),
    (["tune", "crest", "--out", "{out}", "--set", "epochs=0"], "--set epochs=0: epochs must be a positive integer"),
    (["tune", "fastest-stack", "--out", "{out}"], "no built-in search space for 'fastest-stack' (built in: coreset, "
                                                 "crest, deltagrad, infobatch, lipt, sparse, train)"),
]


# ----- issue 72: every value checked where it enters, in one place, on every entry point ---------------
ALIAS_BOMB = "".join(f"- &l{i} [{', '.join([f'*l{i - 1}' if i else '1'] * 9)}]\n" for i in range(9))  # 9**9 values
CONFIGS.update({
    "alias_bomb": "lr:\n" + ALIAS_BOMB,
    "space_alias_bomb": "method: train\nspace:\n  lr: {choice: [0.1]}\nbase:\n  lr:\n"
                        + "".join("  " + line + "\n" for line in ALIAS_BOMB.splitlines()),
    "empty": "",
    "only_comments": "# epochs: 3\n",
    "empty_mapping": "{}\n",
    "space_only_comments": "# method: train\n",
    "space_uniform_int": "method: train\nspace: {epochs: {uniform: [2, 5]}}\n",
    "space_loguniform_int": "method: train\nspace: {batch_size: {loguniform: [16, 128]}}\n",
    "space_relative_run": "method: deltagrad\nmetric: score\nspace: {run: {choice: [runs/dg]}}\n",
})
SAYS += [
    (T + ["--config", "{cfg:alias_bomb}"], "alias_bomb.yaml' is not valid YAML/JSON: it expands to more than 100,000 "
                                           "values through its aliases"),
    (TUNE + ["--space", "{cfg:space_alias_bomb}"], "space_alias_bomb.yaml' is not valid YAML: it expands to more than "
                                                   "100,000 values"),
    (T + ["--config", "{cfg:empty}"], "empty.yaml' is empty: give it KEY: VALUE lines, or leave out --config"),
    (C + ["--config", "{cfg:only_comments}"], "only_comments.yaml' is empty"),
    (T + ["--config", "{cfg:empty_mapping}"], "empty_mapping.yaml' is empty"),
    (TUNE + ["--space", "{cfg:space_only_comments}"], "space_only_comments.yaml' is empty"),
    # silently cut or ignored: refused
    (T + ["--lr", "0.1", "0.05", "--lrlen", "20", "20", "--epochs", "30"], "--lrlen 20 20 adds up to 40 epochs, more "
                                                                          "than --epochs 30: give --epochs 40, or "
                                                                          "shorter --lrlen"),
    (U + ["--lr", "0.1", "0.05", "--lrlen", "2", "2", "--epochs", "3"], "adds up to 4 epochs, more than --epochs 3"),
    (T + ["--epochs", str(2**62)], "epochs must be a positive integer, at most 1,000,000, got 4611686018427387904"),
    (U + ["--epochs", str(2**62)], "at most 1,000,000"),
    (T + ["--data-dir", "{work}"], "--data-dir is a setting of --dataset cifar10, cifar100, fashion-mnist, "
                                   "imagefolder, mnist; digits does not use it: leave it out"),
    (T + ["--download"], "--download is a setting of --dataset cifar10, cifar100, fashion-mnist, mnist; digits does "
                         "not use it"),
    (U + ["--download", "--dataset", "digits-aug"], "--download is a setting of"),
    (C + ["--dataset", "imagefolder", "--data-dir", "{work}", "--download"], "imagefolder does not use it"),
    # tune: what would fail only inside Ray's trials
    (TUNE + ["--space", "{cfg:space_uniform_int}"], "space entry 'epochs': uniform draws real numbers, and epochs "
                                                    "takes an integer: use randint: [low, high] (high excluded) or "
                                                    "choice: [...]"),
    (TUNE + ["--space", "{cfg:space_loguniform_int}"], "loguniform draws real numbers, and batch_size takes an "
                                                       "integer"),
    (["tune", "deltagrad", "--out", "{out}", "--set", "run=runs/dg"], "--set run=runs/dg, a relative path, but each "
                                                                      "Tune trial runs in a directory of its own: give "
                                                                      "the absolute path ("),
    (["tune", "deltagrad", "--out", "{out}", "--space", "{cfg:space_relative_run}"], "space entry 'run' sweeps "
                                                                                     "run=runs/dg, a relative path"),
    (["tune", "deltagrad", "--out", "{out}", "--set", "run=/no/such/run"], "'/no/such/run' is not a DeltaGrad run"),
    # words: the real problem, and flags the command has
    (["report", "{run}", "--columns", "method"], "--columns picks from a stored table shown with --markdown; a report "
                                                 "of runs shows every column: add --markdown and give one .parquet "
                                                 "file, or leave out --columns"),
    (["report", "{run}", "--rows", "method:full"], "or leave out --rows"),
    (["write-mnist", "{out}/m", "--dataset", "mnist"], "write-mnist writes a dataset it can load without a directory "
                                                       "(cifar10, digits, digits-aug, fashion-mnist, synthetic); mnist "
                                                       "is read from its own files in a directory: give one of those"),
    (["write-mnist", "{out}/m", "--dataset", "cifar100"], "cifar100 is read from its own files in a directory"),
    (["datasets", "fetch", "cifar100"], "unknown dataset to fetch 'cifar100'; choose one of: cifar10"),
    # bench verdicts: refused before anything is written
    (B + ["verdicts", "a={pq_null_method}", "--save", "{out}/v"], "null-method.parquet is not a frontier summary as "
                                                                  "`effray bench frontier --save` writes it: its "
                                                                  "method is null in row 0, not a name"),
    (B + ["verdicts", f"method={SUMMARY}", "--save", "{out}/v"], "setup 'method' names the table's own column of "
                                                                 "methods: name the setup otherwise"),
    # earlier notes: pyarrow's whole line
    (["report", "--markdown", "{pq_bad}"], "Parquet magic bytes not found in footer. Either the file is corrupted or "
                                           "this is not a parquet file.)"),
    (TUNE + ["--set", "lr=[1"], "--set 'lr=[1': the value is not valid YAML (while parsing a flow sequence)"),  # was a
    (S + ["--option", "eta=[1"], "--option 'eta=[1': the value is not valid YAML"),  # yaml traceback
    (B + ["coreset", "--methods", "glister:eta=[1"], "method option 'eta=[1' in 'glister:eta=[1': the value is not "
                                                     "valid YAML"),
    (T + ["--dataset", "fashion-mnist", "--download"], "--download fetches the dataset into --data-dir DIR: give "
                                                       "--data-dir"),
    (T + ["--dataset", "mnist", "--data-dir", "{work}/new"], "/work/new' does not exist: give the directory that "
                                                             "holds the dataset, or add --download to fetch it there"),
]


def test_an_alias_bomb_is_refused_in_under_a_second(world, monkeypatch):
    """issue 72: a 600-byte alias bomb took 85 s and printed a 2 GB line (40 s in a tune space)."""
    import time

    monkeypatch.chdir(world["work"])
    assert len(CONFIGS["alias_bomb"]) < 600
    for args in (T + ["--config", "{cfg:alias_bomb}"], TUNE + ["--space", "{cfg:space_alias_bomb}"]):
        CliRunner().invoke(main, [fill(a, world) for a in args])  # the command's imports, once
        start = time.perf_counter()
        result = CliRunner().invoke(main, [fill(a, world) for a in args])
        assert time.perf_counter() - start < 1 and result.exit_code == 2 and len(result.stderr) < 300, result.stderr

def test_a_refused_stack_suggests_a_command_that_runs():
    """issue 65: `run sparse --with lipt` suggested `run lipt --with sparse`, refused too."""
    from raypkg.recipe_registry import find_recipe, stacks_onto

    for name in ("coreset", "lipt"):
        find_recipe(name, (stacks_onto(name),))  # no UsageError


def test_a_measured_execution_does_not_read_as_zero_seconds():
    from raypkg.engine.execution import Execution

    line = Execution("fp32", source="measured", rounds=5, measure_s=0.004).describe()
    assert "measured by this run in 4.0 ms, 5 rounds" in line and "0.00 s" not in line


# issue 48: refusals only the Python API can meet (a keyword's own form), each with what its line says.
API_BAD = [
    ("infobatch+sparse", {"stack": ["sparse"]}, "stack names sparse twice: the method 'infobatch+sparse' names it"),
    ("train+sparse", {"stack": "sparse"}, "stack names sparse twice"),
    ("train", {"stack": {"sparse": 1}}, "stack must be a list of names, got {'sparse': 1}"),
    ("train", {"stack": ["sparse", "sparse"]}, "--with names sparse twice"),
    ("train", {"stack": 3}, "stack must be a list of names, got 3"),
    ("train", {"model": "mlp", "memory_format": "channels_last"}, "model mlp has none"),
    ("coreset", {"model": "logreg", "memory_format": "channels_last"}, "model logreg has none"),
    ("infobatch", {"target_acc": 1.5}, "target-acc must be a test accuracy in (0, 1], got 1.5"),
    ("train", {"target_acc": float("nan")}, "target-acc must be"),
    ("train", {"amp": False}, "unknown setting(s) amp"),
    ("select", {"target_acc": 0.5}, "--target-acc times the subset's training to an accuracy; select only selects"),
    ("infobatch+", {}, "stack [''] has an empty member"),
    ("train", {"seed": int(HUGE)}, "seed 99999999999999999999 does not fit a 64-bit integer"),  # issue 65
    ("train", {"epochs": int(HUGE)}, "does not fit a 64-bit integer"),
    ("train", {"max_failures": 3}, "--max-failures restarts Ray Train workers"),
]


@pytest.mark.parametrize("method, settings, says", API_BAD, ids=[f"{m} {s}" for m, s, _ in API_BAD])
def test_the_api_refuses_what_only_it_can_be_given(world, monkeypatch, method, settings, says):
    import raypkg

    monkeypatch.chdir(world["work"])
    before = snapshot(world["out"], world["work"])
    with pytest.raises(UsageError) as refused:
        raypkg.run(method, save=False, out=str(world["out"]), dataset="digits", **settings)
    assert says in str(refused.value) and "\n" not in str(refused.value)
    assert snapshot(world["out"], world["work"]) == before


def test_the_table_is_large_enough():
    rows = BAD + PROCESSES + [args for args, _ in SAYS]
    assert len(rows) >= 120
    commands = {" ".join(a for a in row[:2] if not a.startswith(("-", "{"))) for row in rows}
    for command in ("train", "select", "run coreset", "unlearn train", "unlearn delete", "unlearn add",
                    "unlearn online", "tune train", "report", "bench overhead", "bench selection",
                    "bench deltagrad", "bench data", "bench frontier", "jobs/train.py", "jobs/coreset.py",
                    "jobs/deltagrad.py train", "run lipt",
                    "jobs/lipt.py"):
        assert any(c.startswith(command) for c in commands), command
    # issue 48: the newer surfaces
    named = {arg for row in rows for arg in row}
    assert {"--with", "--precision", "--memory-format", "--target-acc"} <= named
    assert {"bench precision", "bench frontier", "report"} <= commands


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The runs root with a finished train run, a finished DeltaGrad run, an unfinished run
    and three whose summary.json is damaged; a read-only directory; config files; an empty
    working directory."""
    base = tmp_path_factory.mktemp("bad-input")
    out = base / "runs"
    common = ["--out", str(out), "--wandb", "disabled", "--no-progress"]
    for args in (["train", "--model", "logreg", "--epochs", "1", "--name", "existing", *common],
                 ["unlearn", "train", "--epochs", "1", "--name", "dg", *common]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
    (out / "unfinished").mkdir()
    (out / "unfinished" / "config.yaml").write_text("epochs: 3\n")
    metrics = pd.read_parquet(out / "existing" / "metrics.parquet")
    (out / "word-acc").mkdir()  # and its epoch seconds are words too
    metrics.assign(epoch_s="slow").to_parquet(out / "word-acc" / "metrics.parquet")
    summary = json.loads((out / "existing" / "summary.json").read_text())
    for name, damaged in (("null-wall", {**summary, "wall_s": None}), ("word-acc", {**summary, "test_acc": "high"}),
                          ("list-summary", [summary])):
        (out / name).mkdir(exist_ok=True)
        (out / name / "summary.json").write_text(json.dumps(damaged))
    if os.geteuid() == 0:  # root writes through file modes: use a directory no one can write to
        ro = Path("/proc/1")
    else:
        ro = base / "read-only"
        ro.mkdir()
        ro.chmod(0o555)
    configs = base / "configs"
    configs.mkdir()
    for name, text in CONFIGS.items():
        (configs / f"{name}.yaml").write_text(text)
    (configs / "binary.yaml").write_bytes(bytes(range(256)) * 4)
    (base / "a-file").write_text("not a directory\n")
    (base / "ids-no-id.csv").write_text("index\n1\n2\n")
    (base / "ids-no-header.csv").write_text("3\n7\n")
    (base / "corrupt.parquet").write_bytes(b"PAR1" + bytes(range(200)))
    (base / "empty.parquet").write_bytes(b"")
    summary = pd.read_parquet(SUMMARY)
    summary.assign(method=[None, *summary["method"][1:]]).to_parquet(base / "null-method.parquet")
    (base / "cache-clash" / "execution.json").mkdir(parents=True)  # a directory where the file belongs
    (base / "cache-bad").mkdir()
    (base / "cache-bad" / "execution.json").write_text("{not json")
    work = base / "work"
    work.mkdir()
    return {"out": out, "run": out / "existing", "dg": out / "dg", "unfinished": out / "unfinished",
            "ro": ro, "file": base / "a-file", "bin": configs / "binary.yaml", "configs": configs, "work": work,
            "ids_noid": base / "ids-no-id.csv", "ids_noheader": base / "ids-no-header.csv",
            "pq_bad": base / "corrupt.parquet", "pq_empty": base / "empty.parquet",
            "pq_null_method": base / "null-method.parquet",
            "cache_clash": base / "cache-clash", "cache_bad": base / "cache-bad", "base": base}


def fill(arg: str, world: dict) -> str:
    for key in ("out", "run", "dg", "unfinished", "ro", "file", "bin", "ids_noid", "ids_noheader", "pq_bad",
                "pq_empty", "pq_null_method", "cache_clash", "cache_bad", "work"):
        arg = arg.replace("{" + key + "}", str(world[key]))
    if arg.startswith("{cfg:"):
        arg = str(world["configs"] / f"{arg[5:-1]}.yaml")
    return arg


def snapshot(*roots: Path) -> dict:
    files = {}
    for root in roots:
        for path in sorted(root.rglob("*")):
            files[str(path)] = hashlib.sha1(path.read_bytes()).hexdigest() if path.is_file() else "dir"
    return files


def check_refusal(code: int, stderr: str, before: dict, world: dict) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 2, stderr
    assert "Traceback" not in stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    after = snapshot(world["out"], world["work"])
    assert after == before, {k: after.get(k) for k in set(after) ^ set(before)} or "a file changed"
    return lines[0]


@pytest.mark.parametrize("args", BAD, ids=[" ".join(a for a in row if a not in ("--out", "{out}")) for row in BAD])
def test_bad_input_in_process(world, monkeypatch, args):
    monkeypatch.chdir(world["work"])
    before = snapshot(world["out"], world["work"])
    result = CliRunner().invoke(main, [fill(a, world) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    check_refusal(result.exit_code, result.stderr, before, world)


@pytest.mark.parametrize("args, says", SAYS, ids=[" ".join(a for a in row if a not in ("--out", "{out}"))
                                                  for row, _ in SAYS])
def test_bad_input_says_what_is_wrong(world, monkeypatch, args, says):
    monkeypatch.chdir(world["work"])
    before = snapshot(world["out"], world["work"])
    result = CliRunner().invoke(main, [fill(a, world) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert says in check_refusal(result.exit_code, result.stderr, before, world)


# issue 65: the execution cache under bad conditions, named by EFFRAY_CACHE_DIR: (environment,
# arguments, what the line says). Nothing is written there either (no execution.lock).
ENV_SAYS = [
    ({"EFFRAY_CACHE_DIR": "{file}"}, ["execution", "--clear"], "a-file' is a file, not a directory; nothing cleared"),
    ({"EFFRAY_CACHE_DIR": "{ro}"}, ["execution", "--clear"], "is not writable; nothing cleared"),
    ({"EFFRAY_CACHE_DIR": "{cache_clash}"}, ["execution", "--clear"], "execution.json' is a directory, not a file; "
                                                                      "nothing cleared"),
    ({"EFFRAY_CACHE_DIR": "{cache_bad}"}, ["execution"], "execution.json' (Expecting property name enclosed in "
                                                         "double quotes: line 1 column 2 (char 1)); `effray execution "
                                                         "--clear` removes it"),
    ({"EFFRAY_CACHE_DIR": "{cache_clash}"}, ["execution"], "execution.json' (Is a directory)"),
    ({"EFFRAY_CACHE_DIR": "{file}"}, ["execution"], "a-file/execution.json' (Not a directory)"),
]


@pytest.mark.parametrize("env, args, says", ENV_SAYS, ids=[f"{list(e.values())[0]} {' '.join(a)}"
                                                           for e, a, _ in ENV_SAYS])
def test_a_bad_environment_says_what_is_wrong(world, monkeypatch, env, args, says):
    monkeypatch.chdir(world["work"])
    before = snapshot(world["out"], world["work"]), snapshot(world["base"] / "cache-clash", world["base"] / "cache-bad")
    result = CliRunner().invoke(main, args, env={k: fill(v, world) for k, v in env.items()})
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert says in check_refusal(result.exit_code, result.stderr, before[0], world)
    assert snapshot(world["base"] / "cache-clash", world["base"] / "cache-bad") == before[1]


# The commands whose flags are a recipe's settings: each of their refusal rows is refused by
# raypkg.run too, with the same line (issue 41: the check lives in the config, not the command).
API_COMMANDS = {("train",): "train", ("select",): "select", ("unlearn", "train"): "unlearn-train",
                **{("run", name): name for name in main.commands["run"].commands}}


def api_call(args: list[str], world: dict | None):
    """(recipe, config file, settings) of a row of a command of API_COMMANDS, its flags parsed
    by the command's own options; None for other rows and for those click itself refuses
    (an unknown flag, a word where a number belongs: no such keyword call exists)."""
    import click

    from raypkg.cli_options import join_list_flags, parse_options

    path = next((path for path in API_COMMANDS if tuple(args[:len(path)]) == path), None)
    if path is None or "--address" in args:
        return None
    command = main
    for name in path:
        command = command.commands[name]
    try:
        ctx = command.make_context(" ".join(path), join_list_flags([fill(a, world) if world else a
                                                                     for a in args[len(path):]]))
    except (click.ClickException, UsageError):  # UsageError: an integer beyond 64 bits (API_BAD has its own)
        return None
    settings = {k: v for k, v in ctx.params.items() if v is not None and v != ()}
    config = settings.pop("config_file", None)
    if "option_pairs" in settings:
        try:
            settings["options"] = parse_options(settings.pop("option_pairs"))
        except UsageError:  # `--option eta`: the command line's own form, refused as it is read
            return None
    return API_COMMANDS[path], config, settings


API_ROWS = [row for row in BAD + [args for args, _ in SAYS] if api_call(row, None) is not None]


@pytest.mark.parametrize("args", API_ROWS, ids=[" ".join(a for a in row if a not in ("--out", "{out}"))
                                                for row in API_ROWS])
def test_the_api_refuses_each_row_with_the_same_line(world, monkeypatch, args):
    import raypkg

    monkeypatch.chdir(world["work"])
    before = snapshot(world["out"], world["work"])
    result = CliRunner().invoke(main, [fill(a, world) for a in args])
    line = check_refusal(result.exit_code, result.stderr, before, world)
    method, config, settings = api_call(args, world)
    with pytest.raises(UsageError) as refused:
        raypkg.run(method, config, **settings)
    assert f"error: {refused.value}" == line
    assert snapshot(world["out"], world["work"]) == before


@pytest.mark.slow
@pytest.mark.parametrize("args", PROCESSES, ids=[" ".join(row[:4]) for row in PROCESSES])
def test_bad_input_real_process(world, args):
    head = [sys.executable, "-m", "raypkg.cli"] if args[0] == "effray" else [sys.executable, str(REPO / args[0])]
    before = snapshot(world["out"], world["work"])
    proc = subprocess.run(head + [fill(a, world) for a in args[1:]], capture_output=True, text=True,
                          cwd=world["work"], env=bare_env(), timeout=120)
    check_refusal(proc.returncode, proc.stderr, before, world)


@pytest.mark.slow
def test_an_unwritable_home_or_a_deleted_working_directory_is_one_line(world, tmp_path):
    """Ray (~/.ray) and W&B (~/.cache) need a writable HOME; a deleted working directory
    breaks torch's import. Both are one line in a bare shell, before anything runs."""
    env = bare_env(HOME=str(world["ro"] / "home" if os.geteuid() else world["ro"]))
    train = [sys.executable, "-m", "raypkg.cli", "train", "--epochs", "1", "--out", str(world["out"])]
    before = snapshot(world["out"], world["work"])
    proc = subprocess.run(train, capture_output=True, text=True, cwd=world["work"], env=env, timeout=120)
    assert "is not a writable directory" in check_refusal(proc.returncode, proc.stderr, before, world)
    gone = tmp_path / "gone"
    gone.mkdir()
    script = f'cd "{gone}" && rmdir "{gone}" && exec "$@"'
    proc = subprocess.run(["sh", "-c", script, "sh", *train], capture_output=True, text=True, env=bare_env(),
                          timeout=120)
    assert "the current directory no longer exists" in check_refusal(proc.returncode, proc.stderr, before, world)


@pytest.mark.parametrize("target", ["metrics.parquet", "model.pt", "summary.json", "config.yaml"])
def test_a_full_disk_is_one_line_with_nothing_half_written(tmp_path, monkeypatch, target):
    """Every run output is written to a temporary name and renamed: a writer that fails
    with ENOSPC half-way (Parquet, torch.save, text) ends the run with one line, status 1,
    and neither the run directory nor a temporary file stays."""
    import pyarrow.parquet as pq
    import torch

    def failing(real):
        def write(*args, **kwargs):
            dest = next((a for a in args if isinstance(a, (str, Path)) and target in str(a)), None)
            if dest is None:
                return real(*args, **kwargs)
            with open(dest, "wb") as f:
                f.write(b"half")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return write

    for owner, name in ((pq, "write_table"), (torch, "save"), (Path, "write_text")):
        monkeypatch.setattr(owner, name, failing(getattr(owner, name)))
    out = tmp_path / "runs"
    result = CliRunner().invoke(main, ["train", "--model", "logreg", "--epochs", "1", "--out", str(out),
                                       "--wandb", "disabled", "--no-progress"])
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 1 and len(lines) == 1, result.stderr
    assert lines[0].startswith("error: cannot write") and target in lines[0] and "No space left" in lines[0]
    assert list(out.rglob("*")) == []


def test_atomic_write_leaves_nothing_when_the_writer_fails(tmp_path):
    from raypkg.errors import RunFailed
    from raypkg.paths import atomic_write

    def half(tmp):
        tmp.write_bytes(b"half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    (tmp_path / "kept.json").write_text("old\n")
    with pytest.raises(RunFailed, match="No space left on device"):
        atomic_write(tmp_path / "kept.json", half)
    assert [p.name for p in tmp_path.iterdir()] == ["kept.json"] and (tmp_path / "kept.json").read_text() == "old\n"


def test_report_notes_each_damaged_run_and_shows_the_rest(world, monkeypatch):
    """A run whose summary.json is damaged (a null or a word where a number belongs) or
    unreadable (permissions) is skipped with one warning line each; the others are shown."""
    unreadable, read_text = world["out"] / "word-acc" / "summary.json", Path.read_text

    def read(self, *args, **kwargs):  # as chmod 000 would for a user other than root
        if self == unreadable:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
        return read_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", read)
    monkeypatch.chdir(world["work"])
    result = CliRunner().invoke(main, ["report", str(world["run"]), str(world["out"] / "null-wall"),
                                       str(world["out"] / "word-acc"), "--no-plot"])
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(warnings) == 2 and all(w.startswith("warning: skipping") for w in warnings), warnings
    assert "wall_s is null" in warnings[0] and "Permission denied" in warnings[1]
    assert "existing" in result.stdout and "null-wall" not in result.stdout


def test_report_shows_no_curves_for_metrics_whose_numbers_are_words(world, monkeypatch, tmp_path):
    """A metrics.parquet whose epoch_s are words: one warning, no epochs_s, the rest shown."""
    run = tmp_path / "run"
    run.mkdir()
    for name in ("summary.json", "metrics.parquet"):
        source = world["run"] if name == "summary.json" else world["out"] / "word-acc"
        (run / name).write_bytes((source / name).read_bytes())
    monkeypatch.chdir(world["work"])
    result = CliRunner().invoke(main, ["report", str(run), "--no-plot"])
    assert result.exit_code == 0, result.output
    assert result.stderr.strip() == f"warning: {str(run)!r}: unreadable metrics.parquet, no curves for this run"


def cli_commands(group=main, path=()):
    """(path, command) of every command of ``effray``, its lazy bench commands included."""
    import click

    for name in group.list_commands(None):
        command = group.get_command(None, name)
        if isinstance(command, click.Group):
            yield from cli_commands(command, (*path, name))
        else:
            yield (*path, name), command


def test_every_list_valued_flag_adds_up_when_repeated():
    """Derived from the CLI itself: a flag whose value is a list (a list type, or a help that
    says comma-separated) is a ListOption or repeatable, so a second one never drops the first."""
    import click

    from raypkg.cli_options import ListOption, NameList, NumberList

    lists = []
    for path, command in cli_commands():
        for param in command.params:
            if not isinstance(param, click.Option):
                continue
            listed = isinstance(param.type, (NameList, NumberList)) or "comma-separated" in (param.help or "").lower()
            if listed:
                assert isinstance(param, ListOption) or param.multiple, (path, param.opts)
                lists.append((path, param.opts[0]))
    assert (("train",), "--with") in lists and (("bench", "frontier"), "--methods") in lists


def test_a_repeated_list_flag_adds_and_a_single_valued_one_keeps_the_last():
    from raypkg.bench import bench
    from raypkg.cli_options import join_list_flags

    def params(command, *args):
        return command.make_context("x", join_list_flags(list(args))).params

    train = main.commands["train"]
    assert params(train, "--with", "sparse", "--with", "infobatch")["stack"] == ["sparse", "infobatch"]
    assert params(train, "--with", "sparse,infobatch")["stack"] == ["sparse", "infobatch"]
    assert params(train, "--lr", "0.1", "0.05", "--lr", "0.01")["lr"] == [0.1, 0.05, 0.01]
    assert params(train)["stack"] is None and params(train)["lr"] is None  # not given: the config's value stays
    assert params(train, "--epochs", "2", "--epochs", "3")["epochs"] == 3
    frontier = bench.get_command(None, "frontier")
    assert params(frontier, "--methods", "rs2", "--methods", "uniform+rigl-itop")["methods"] == "rs2,uniform+rigl-itop"
    assert params(frontier, "--fractions", "0.1", "--fractions", "0.3")["fractions"] == [0.1, 0.3]
    assert params(frontier, "--workers", "1", "--workers", "2")["workers"] == 2
    deltagrad = bench.get_command(None, "deltagrad")
    assert params(deltagrad)["ratios"] == [0.001, 0.01] and params(deltagrad)["lr"] == [0.1, 0.05]
    assert params(deltagrad, "--also", "1,2,3", "--also", "4,5,6")["also"] == "1,2,3;4,5,6"


def test_no_frontier_refusal_names_a_flag_it_does_not_have(world, monkeypatch):
    """issue 48: a stack that cannot hold, in bench frontier, said `--with ...`."""
    monkeypatch.chdir(world["work"])
    for methods in ("crest+infobatch", "infobatch+infobatch", "rs2+rigl-itop+a-rigl-itop", "uniform+crest"):
        result = CliRunner().invoke(main, ["bench", "frontier", "--methods", methods])
        assert result.exit_code == 2 and "--with" not in result.stderr and "--methods" in result.stderr, result.stderr
    help_text = CliRunner().invoke(main, ["bench", "frontier", "--help"]).output
    assert "--precision" not in help_text and "--with" not in help_text


def test_report_shows_a_target_no_run_reached_as_a_dash(world, monkeypatch):
    """issue 48: report printed None where every run missed the target, - where some did."""
    monkeypatch.chdir(world["work"])
    result = CliRunner().invoke(main, ["report", str(world["run"]), "--target-acc", "1", "--no-plot"])
    assert result.exit_code == 0, result.output
    header, row = result.stdout.splitlines()[:2]
    assert "tta_s" in header and "None" not in result.stdout
    assert row.split()[header.split().index("tta_s")] == "-"


def test_a_plan_that_reads_its_own_images_is_not_said_to_stream_by_ray_data():
    from raypkg.algorithms import method_config
    from raypkg.engine.config import TrainConfig
    from raypkg.recipe import streaming_note
    from raypkg.recipe_registry import find_recipe

    note = "data: 10 train images, 0.01 GiB decoded; streamed from disk by Ray Data (--data-path stream)"
    assert streaming_note(note, TrainConfig()) == note
    for cfg in (method_config("infobatch")(), method_config("crest")(),
                find_recipe("train+infobatch").config_cls(stack=["infobatch"]),
                find_recipe("infobatch+ema").config_cls(stack=["ema"])):  # ema's settings first in the MRO
        said = streaming_note(note, cfg)
        assert "by Ray Data (" not in said and "read in the training process by" in said and cfg.BATCH_PLAN in said


def test_tune_num_samples_says_what_a_grid_does():
    help_text = " ".join(CliRunner().invoke(main, ["tune", "--help"]).output.split())
    assert "with --search grid, times to run the whole grid" in help_text


# Commands that take no value that could be bad (they list, or clear a cache).
NO_INPUT = {("datasets",), ("models",), ("methods",), ("execution",)}


def row_command(row: list[str], paths: set[tuple[str, ...]]) -> tuple[str, ...] | None:
    """The command of a row: the longest command path it starts with (``effray`` dropped)."""
    row = row[1:] if row[0] == "effray" else row
    return max((p for p in paths if tuple(row[:len(p)]) == p), key=len, default=None)


def test_every_flag_of_every_command_has_a_row():
    """Derived from the CLI itself (issue 48), so a new command or flag cannot miss the table:
    every command has a row, and every flag that takes a value is named in some row (a
    setting shared by several commands is checked by one function whatever the command:
    one row is enough). An on/off switch has no bad value of its own; where it cannot act,
    its rows are those of the setting it needs (NEEDS)."""
    import click

    commands = dict(cli_commands())
    rows = BAD + [args for args, _ in SAYS] + PROCESSES
    named = {arg.split("=")[0] for row in rows for arg in row if arg.startswith("-")}
    covered = {row_command(row, set(commands)) for row in rows}
    assert not set(commands) - covered - NO_INPUT, sorted(set(commands) - covered - NO_INPUT)
    missing = sorted({f"{' '.join(path)} {param.opts[0]}" for path, command in commands.items()
                      for param in command.params
                      if isinstance(param, click.Option) and not param.is_flag
                      and not (set(param.opts) | set(param.secondary_opts)) & named})
    assert not missing, missing
