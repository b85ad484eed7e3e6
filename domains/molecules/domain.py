"""The molecules domain: SMILES -> molecular properties (MoLFormer-style) on the shared core."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from core.attention import available_attention
from core.checkpoint import load_meta, load_weights
from core.config import Config
from core.domain import Domain, LoadedModel, TrainingTask
from core.errors import UserError
from core.metrics import REGRESSION_METRICS, machine_label
from core.runs import member_dirs
from domains.molecules import chem, data
from domains.molecules.model import (PRETRAIN_PROPERTIES, MaskedTokenCollate, MoleculeModel,
                                     collate_regression, predict_members, pretrain_loss, regression_loss)
from domains.molecules.tokenizer import SmilesTokenizer

log = logging.getLogger("sciformer.molecules")

# Tokens common in drug-like and small organic molecules but rare in ZINC samples; always in the vocabulary
# so a fine-tuning set (FreeSolv has iodine and phosphorus) does not map them to <unk>.
COMMON_TOKENS = ("C", "c", "N", "n", "O", "o", "S", "s", "P", "F", "Cl", "Br", "I", "B", "[nH]", "[NH+]",
                 "[N+]", "[O-]", "[Si]", "[Se]", "[se]", "[S+]", "[P+]", "[2H]", "=", "#", "(", ")", "/", "\\",
                 "@", "@@", "[C@H]", "[C@@H]", "[C@]", "[C@@]", "-", "+", "1", "2", "3", "4", "5", "6")


class MoleculesDomain(Domain):
    name = "molecules"
    description = "SMILES -> molecular properties (MoLFormer-style linear attention + rotary)"
    stages = ("pretrain", "train")
    smoke_overrides = ("data.max_molecules=60", "pretrain.corpus_size=64", "pretrain.train.max_steps=2",
                       "train.max_steps=3", "train.epochs=1", "train.ensemble=2", "train.progress=false",
                       "encoder.d_model=32", "encoder.n_layers=1", "encoder.d_ff=64", "head.hidden=16")

    def check_config(self, values: Mapping[str, Any]) -> list[str]:
        problems = []
        d = values["data"]
        if d["dataset"] == "csv" and not d.get("path"):
            problems.append("data.path: required when data.dataset is csv (path to your CSV/Parquet file)")
        if d["dataset"] == "csv" and not d.get("targets"):
            problems.append("data.targets: list the target column(s) of your file, e.g. --set 'data.targets=[logS]'")
        if d["split"] == "predefined" and d["dataset"] != "solubility":
            problems.append("data.split: predefined needs a dataset with its own test set (solubility)")
        if values["features"]["max_len"] > values["encoder"]["max_len"]:
            problems.append(f"features.max_len ({values['features']['max_len']}) exceeds encoder.max_len "
                            f"({values['encoder']['max_len']}); lower the first or raise the second")
        if abs(sum(d["sizes"]) - 1.0) > 1e-6:
            problems.append(f"data.sizes: fractions must sum to 1, got {list(d['sizes'])} (sum {sum(d['sizes']):g})")
        return problems

    # -- preparation ---------------------------------------------------------------------------------
    def prepare(self, cfg: Config, out_dir: Path) -> dict[str, str]:
        return data.prepare(cfg, out_dir)

    # -- training ------------------------------------------------------------------------------------
    def _tokenizer_and_encoder(self, cfg: Config, init: Path | None, smiles: list[str]):
        if init is None:
            return SmilesTokenizer.build([*smiles, *COMMON_TOKENS]), dict(cfg["encoder"])
        # the architecture comes from the checkpoint; the attention implementation and dropout from the
        # config (e.g. a fused GPU kernel for an encoder pretrained with the PyTorch one) if the kind matches
        task = load_meta(member_dirs(init)[0])["task"]
        enc = dict(task["encoder"])
        backends = available_attention()
        wanted, trained = cfg["encoder.attention"], enc["attention"]
        if trained in backends and backends[wanted].kind != backends[trained].kind:
            same = ", ".join(n for n, b in backends.items() if b.kind == backends[trained].kind)
            raise UserError(f"encoder.attention={wanted} is {backends[wanted].kind} attention, but {init} was "
                            f"trained with {backends[trained].kind} attention; choose one of: {same}")
        enc.update(attention=wanted, dropout=float(cfg["encoder.dropout"]))
        return SmilesTokenizer.from_dict(task["tokenizer"]), enc

    def build_task(self, cfg: Config, prepared: Path, stage: str, init: Path | None, seed: int) -> TrainingTask:
        max_len = int(cfg["features.max_len"])
        if stage == "pretrain":
            corpus = pd.read_csv(Path(prepared) / data.CORPUS)["smiles"].tolist()
            tok, enc = self._tokenizer_and_encoder(cfg, init, corpus)
            props, _ = chem.rdkit_descriptors(corpus, names=PRETRAIN_PROPERTIES)
            props = np.nan_to_num(props)
            p_mean, p_std = props.mean(0), props.std(0) + 1e-6
            examples = [{"ids": tok.encode(s, max_len), "props": (p - p_mean) / p_std} for s, p in zip(corpus, props)]
            n_val = max(1, len(examples) // 20)
            meta = {"kind": "pretrain", "tokenizer": tok.to_dict(), "encoder": enc, "n_props": len(PRETRAIN_PROPERTIES)}
            model = self.build_model(meta)
            if init is not None:
                load_weights(model, member_dirs(init)[0], strict=False)
            collate = MaskedTokenCollate(tok.mask_id, len(tok), tok.special_ids, float(cfg["pretrain.mask_prob"]))
            return TrainingTask(model, examples[n_val:], examples[:n_val], collate,
                                pretrain_loss(float(cfg["pretrain.property_weight"])), meta)
        frame = data.load_prepared(prepared)
        targets = data.targets_of(cfg)
        train = frame[frame.split == "train"]
        tok, enc = self._tokenizer_and_encoder(cfg, init, train.smiles.tolist())
        y = train[targets].to_numpy(np.float64)
        y_mean, y_std = y.mean(0), y.std(0) + 1e-8
        meta: dict[str, Any] = {"kind": "regression", "tokenizer": tok.to_dict(), "encoder": enc, "targets": targets,
                                "y_mean": y_mean.tolist(), "y_std": y_std.tolist(), "max_len": max_len,
                                "smiles_column": cfg["data.smiles_column"], "hidden": int(cfg["head.hidden"]),
                                "dropout": float(cfg["head.dropout"]), "n_extra": 0,
                                "graph_dim": int(cfg["features.graph_dim"])}
        scaler = None
        if cfg["features.descriptors"]:
            x, names = chem.rdkit_descriptors(train.smiles.tolist())
            scaler = data.DescriptorScaler.fit(x)
            meta.update(n_extra=len(names), descriptor_names=names, descriptor_scaler=scaler.to_dict())
        model = self.build_model(meta)
        if init is not None:
            missing = load_weights(model, member_dirs(init)[0], strict=False)
            log.info("initialized from %s; %d tensors new (heads)", init, len(missing))
        split = {name: frame[frame.split == name] for name in ("train", "val")}
        examples = {name: featurize(part.smiles.tolist(), meta, scaler,
                                    (part[targets].to_numpy(np.float64) - y_mean) / y_std)
                    for name, part in split.items()}
        return TrainingTask(model, examples["train"], examples["val"], collate_regression, regression_loss, meta)

    def build_model(self, metadata: Mapping[str, Any]) -> MoleculeModel:
        vocab = len(metadata["tokenizer"]["vocab"])
        if metadata["kind"] == "pretrain":
            return MoleculeModel(vocab, metadata["encoder"], n_props=metadata["n_props"])
        return MoleculeModel(vocab, metadata["encoder"], n_targets=len(metadata["targets"]),
                             n_extra=metadata["n_extra"], hidden=metadata["hidden"], dropout=metadata["dropout"],
                             graph_dim=metadata.get("graph_dim", 0))

    # -- evaluation ----------------------------------------------------------------------------------
    def evaluate(self, cfg: Config, prepared: Path, members: list[LoadedModel]) -> tuple[list[dict], pd.DataFrame]:
        from domains.molecules.baselines import fit_predict_baselines
        frame = data.load_prepared(prepared)
        targets = members[0].metadata["task"]["targets"]  # what the model predicts, whatever --set says now
        missing = [t for t in targets if t not in frame.columns]
        if missing:
            raise UserError(f"{prepared}: no target column(s) {missing} that the model was trained on; evaluate "
                            "with the prepared data of the same dataset")
        fit = frame[frame.split != "test"]
        if not (frame.split == "test").any():
            raise UserError(f"{prepared}: the test split is empty; use more molecules or other data.sizes")  # baselines have no use for a validation set: give them all of it
        test = frame[frame.split == "test"]
        mean, std = predict_molecules(members, test.smiles.tolist())
        preds = {"sciformer": mean}
        preds.update(fit_predict_baselines(fit.smiles.tolist(), fit[targets].to_numpy(), test.smiles.tolist(),
                                           seed=int(cfg["seed"])))
        y = test[targets].to_numpy(np.float64)
        split = f"{cfg['data.split']}-{cfg['data.replicate']}"
        dataset = cfg["data.dataset"] if cfg["data.dataset"] != "csv" else Path(cfg["data.path"]).stem
        rows = [{"task": f"regression-{t}", "dataset": dataset, "split": split, "method": method, "metric": metric,
                 "value": fn(y[:, k], p[:, k]), "machine": machine_label()}
                for method, p in preds.items() for k, t in enumerate(targets)
                for metric, fn in REGRESSION_METRICS.items()]
        out = pd.DataFrame({"smiles": test.smiles.to_numpy()})
        for k, t in enumerate(targets):
            out[t] = y[:, k]
            for method, p in preds.items():
                out[f"{t}_pred_{method}"] = p[:, k]
            out[f"{t}_unc_sciformer"] = std[:, k]
        return rows, out

    # -- batch prediction ------------------------------------------------------------------------------
    def output_columns(self, metadata: Mapping[str, Any]) -> list[str]:
        return [c for t in metadata["targets"] for c in (t, f"{t}_unc")] + ["status"]

    def text_columns(self, metadata: Mapping[str, Any]) -> list[str]:
        return [metadata["smiles_column"]]

    def validate_input(self, path: Path, columns: list[str], metadata: Mapping[str, Any]) -> None:
        col = metadata["smiles_column"]
        if col not in columns:
            raise UserError(f"{path}: no {col!r} column (found: {', '.join(map(str, columns[:20])) or 'none'}); "
                            f"rename your SMILES column to {col!r}")
        clash = [c for c in self.output_columns(metadata) if c in columns]
        if clash:
            raise UserError(f"{path}: input already has output column(s) {clash}; rename them so nothing is "
                            "overwritten")

    def predict_chunk(self, members: list[LoadedModel], chunk: pd.DataFrame, first_row: int,
                      on_invalid: str) -> pd.DataFrame:
        meta = members[0].metadata["task"]
        raw = chunk[meta["smiles_column"]].tolist()
        canon = [chem.canonicalize(s) for s in raw]
        ok = np.array([c is not None for c, _ in canon], dtype=bool)
        if on_invalid == "error" and not ok.all():
            bad = int(np.argmin(ok))
            raise UserError(f"row {first_row + bad + 1} (SMILES {raw[bad]!r}): {canon[bad][1]}; fix or remove it, "
                            "or use --on-invalid mark|skip")
        out = chunk.copy()
        mean, std = predict_molecules(members, [c for c, _ in canon if c is not None])
        for k, t in enumerate(meta["targets"]):
            col, unc = np.full(len(chunk), np.nan), np.full(len(chunk), np.nan)
            col[ok], unc[ok] = mean[:, k], std[:, k]
            out[t], out[f"{t}_unc"] = col, unc
        out["status"] = [reason for _, reason in canon]
        return out[ok] if on_invalid == "skip" else out

    def example_inputs(self, folder: Path) -> tuple[Path, Path, str]:
        good, bad = Path(folder) / "molecules.csv", Path(folder) / "no_smiles_column.csv"
        pd.DataFrame({"id": ["ethanol", "typo", "benzene"], "smiles": ["CCO", "C1CC(", "c1ccccc1"]}).to_csv(good, index=False)
        pd.DataFrame({"id": ["x"], "structure": ["CCO"]}).to_csv(bad, index=False)
        return good, bad, "no 'smiles' column"

    def report_figures(self, predictions: pd.DataFrame, metrics: list[dict], out_dir: Path) -> list[Path]:
        from domains.molecules.report import parity_plot
        return parity_plot(predictions, metrics, out_dir)


def featurize(smiles: list[str], meta: Mapping[str, Any], scaler, y: np.ndarray | None = None) -> list[dict]:
    tok = SmilesTokenizer.from_dict(meta["tokenizer"])
    extra = scaler.transform(chem.rdkit_descriptors(smiles)[0]) if scaler is not None else [None] * len(smiles)
    graphs = [chem.mol_to_graph(s) for s in smiles] if meta.get("graph_dim") else [None] * len(smiles)
    return [{"ids": tok.encode(s, meta["max_len"]), "extra": extra[i], "graph": graphs[i],
             "y": None if y is None else y[i]} for i, s in enumerate(smiles)]


def predict_molecules(members: list[LoadedModel], smiles: list[str]) -> tuple[np.ndarray, np.ndarray]:
    meta = members[0].metadata["task"]
    scaler = data.DescriptorScaler.from_dict(meta["descriptor_scaler"]) if meta["n_extra"] else None
    if not smiles:
        k = len(meta["targets"])
        return np.zeros((0, k)), np.zeros((0, k))
    return predict_members(members, featurize(smiles, meta, scaler))
