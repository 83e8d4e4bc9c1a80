"""Synthetic results stores with the schema `tort sweep` writes (tort_core.results.load_epochs /
load_trials): one row per (trial, epoch), one summary row per trial, every config key as a dotted
column from RunConfig.flat(), plus sweep, trial id, seed and provenance columns."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd


METRIC_KEYS = ("test_top1", "knn_top1", "train_top1", "loss", "loss_distill")


def _curve(epochs: int, plateau: float, tau: float, noise: float, rng: np.random.Generator) -> np.ndarray:
    e = np.arange(1, epochs + 1)
    return plateau * (1 - np.exp(-e / tau)) + rng.normal(0, noise, epochs)


def make_frames(specs: list[dict], seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """specs: dicts with recipe, mode, dataset, seed, sweep, and optionally overrides, epochs,
    plateau, tau, noise, knn_offset, sec (seconds per epoch), sps (samples/s), distill (level,
    tau), status ('completed' | 'failed' | 'running'), upto (epochs written so far)."""
    from tort_core.config import build_config

    rng = np.random.default_rng(seed)
    ep_rows, trial_rows = [], []
    for i, s in enumerate(specs):
        overrides = dict(s.get("overrides", {}))
        overrides.setdefault("data.dataset", s.get("dataset", "digits"))
        overrides["seed"] = s.get("seed", 0)
        if s.get("mode") == "finetune":
            overrides.setdefault("model.init", "/weights/init.pth")
        cfg = build_config(s.get("recipe", "tort"), "demo", s.get("mode", "scratch"), overrides)
        flat = cfg.flat()
        tid = cfg.content_hash()  # as `tort sweep` does: one trial per config, shared by sweeps
        n = s.get("epochs", 8)
        upto = s.get("upto", n)
        acc = np.clip(_curve(n, s.get("plateau", 40.0), s.get("tau", 3.0), s.get("noise", 1.0), rng), 0, 100)
        knn = np.clip(acc + s.get("knn_offset", 5.0) + rng.normal(0, 0.5, n), 0, 100)
        lvl, dtau = s.get("distill", (5.0, 3.0))
        dist = 1.0 + lvl * np.exp(-np.arange(1, n + 1) / dtau) + rng.normal(0, 0.02, n)
        sec = s.get("sec", 10.0)
        sps = s.get("sps", 100.0)
        sweep = s.get("sweep", "sw")
        axes = s.get("axes", {k: v for k, v in s.get("overrides", {}).items()})
        meta = {"sweep": sweep, "sweeps": json.dumps([sweep]), "trial_id": tid, **flat,
                "axes": json.dumps(axes, sort_keys=True), "git.commit": "abc1234", "version.torch": "2.5.0",
                "hw.device": "cpu"}
        for e in range(upto):
            ep_rows.append({**meta, "epoch": e + 1, "step": (e + 1) * 10, "test_top1": acc[e], "knn_top1": knn[e],
                            "train_top1": acc[e] + 3, "loss": dist[e] + 1, "loss_distill": dist[e],
                            "epoch_seconds": sec * (1 + rng.normal(0, 0.02)), "train_seconds": 0.9 * sec,
                            "samples_per_s": sps * (1 + rng.normal(0, 0.02))})
        status = s.get("status", "completed" if upto == n else "running")
        if status != "running":
            trial_rows.append({**meta, "status": status, "error": "non-finite loss" if status == "failed" else None,
                               "epochs_done": upto, "wall_seconds": sec * upto})
    epochs, trials = pd.DataFrame(ep_rows), pd.DataFrame(trial_rows)
    # A config listed under several sweeps is one trial that belongs to all of them.
    for frame in (epochs, trials):
        if not frame.empty:
            names = frame.groupby("trial_id")["sweep"].agg(lambda x: json.dumps(sorted(set(x))))
            frame["sweeps"] = frame["trial_id"].map(names)
    return epochs, trials


def comparison_specs(datasets=("digits", "flowers102", "oxford_pet"), seeds=(0, 1, 2), mode="scratch",
                     sweep="compare-demo", tort=None, sota=None) -> list[dict]:
    tort = {"plateau": 40.0, "tau": 2.0, "sec": 5.0, "sps": 200.0, **(tort or {})}
    sota = {"plateau": 15.0, "tau": 4.0, "sec": 10.0, "sps": 100.0, **(sota or {})}
    specs = []
    for ds in datasets:
        for sd in seeds:
            specs.append({"recipe": "tort", "mode": mode, "dataset": ds, "seed": sd, "sweep": sweep,
                          "axes": {"recipe": "tort"}, **tort})
            specs.append({"recipe": "sota", "mode": mode, "dataset": ds, "seed": sd, "sweep": sweep,
                          "axes": {"recipe": "sota"}, **sota})
    return specs


