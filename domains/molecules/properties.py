"""The molecules domain's task: SMILES -> molecular properties (MoLFormer-style encoder pretrained with masked
tokens, fine-tuned with importance-chosen RDKit descriptors as an ensemble of seeds, blended with a descriptor
forest where validation says so). Stages: masked-token pretraining, then fine-tuning."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
from rdkit import Chem

from core.attention import available_attention
from core.checkpoint import load_meta, load_weights
from core.config import Config, leaves, within
from core.errors import UserError
from core.metrics import REGRESSION_METRICS, metric_rows
from core.readers import TableReader, separator_hint
from core.runs import LoadedModel, member_dirs
from core.task import BadInput, Prediction, Task, TrainingTask
from domains.molecules import data, features
from domains.molecules.inference import PREDICTED, DescriptorScaler, featurize, predict_frame, predict_smiles
from domains.molecules.model import (
    PRETRAIN_PROPERTIES,
    MaskedTokenCollate,
    MoleculeModel,
    collate_regression,
    pretrain_loss,
    regression_loss,
)
from domains.molecules.tokenizer import SmilesTokenizer

log = logging.getLogger("sciformer.molecules")

# Tokens common in drug-like and small organic molecules but rare in ZINC samples; always in the vocabulary
# so a fine-tuning set (FreeSolv has iodine and phosphorus) does not map them to <unk>.
COMMON_TOKENS = ("C", "c", "N", "n", "O", "o", "S", "s", "P", "F", "Cl", "Br", "I", "B", "[nH]", "[NH+]",
                 "[N+]", "[O-]", "[Si]", "[Se]", "[se]", "[S+]", "[P+]", "[2H]", "=", "#", "(", ")", "/", "\\",
                 "@", "@@", "[C@H]", "[C@@H]", "[C@]", "[C@@]", "-", "+", "1", "2", "3", "4", "5", "6")


def baselines_per_target(fit: pd.DataFrame, test: pd.DataFrame, targets: list[str], seed: int) -> dict:
    """The baselines on the training+validation molecules; with missing targets, one fit per target on the
    molecules that have it (the baselines take complete targets only)."""
    from domains.molecules.baselines import fit_predict_baselines
    y = fit[targets].to_numpy(np.float64)
    if not np.isnan(y).any():
        return fit_predict_baselines(fit.smiles.tolist(), y, test.smiles.tolist(), seed=seed)
    parts = []
    for k in range(len(targets)):
        have = ~np.isnan(y[:, k])
        parts.append(fit_predict_baselines(fit.smiles[have].tolist(), y[have, k], test.smiles.tolist(), seed=seed))
    return {m: np.hstack([p[m] for p in parts]) for m in parts[0]}


class PropertiesTask(Task):
    data_settings = ("data",)
    prediction_settings = ("data.smiles_column",)     # the input file's SMILES column may have another name
    name = "properties"
    description = "SMILES -> properties with uncertainty (pretrained encoder + descriptors, ensemble)"
    stages = ("pretrain", "train")
    smoke_overrides = ("data.max_molecules=60", "pretrain.corpus_size=64", "pretrain.train.max_steps=2",
                       "train.max_steps=3", "train.epochs=1", "train.ensemble=2", "train.progress=false",
                       "encoder.d_model=32", "encoder.n_layers=1", "encoder.d_ff=64", "head.hidden=16")

    # -- preparation ---------------------------------------------------------------------------------
    def prepare(self, cfg: Config, out_dir: Path) -> dict[str, str]:
        return data.prepare(cfg, out_dir)

    def data_files(self, cfg: Config) -> list[Path]:
        """Your CSV/Parquet (dataset csv) and its splits file (split file): the files prepare reads."""
        files = [cfg["data.path"]] if cfg["data.dataset"] == "csv" else []
        files += [cfg["data.splits_file"]] if cfg["data.split"] == "file" else []
        return [Path(str(f)) for f in files if f]

    def check_data(self, cfg: Config) -> list[str]:
        """Also: the columns the config names are in the file's header (read without loading the rows)."""
        problems = super().check_data(cfg)
        if problems or cfg["data.dataset"] != "csv" or not cfg["data.path"]:
            return problems
        path = Path(cfg["data.path"])
        try:
            columns = TableReader().header(path)
        except UserError as exc:
            return [str(exc)]
        wanted = [cfg["data.smiles_column"], *data.targets_of(cfg)]
        wanted += [cfg["data.split_column"]] if cfg["data.split"] == "column" else []
        missing = [c for c in wanted if c not in columns]
        return [f"{path}: missing column(s) {missing} (found: {', '.join(map(str, columns[:20]))}); set "
                f"data.smiles_column / data.targets / data.split_column{separator_hint(columns)}"] if missing else []

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
        given = {k: v for k, v in leaves(cfg.to_given()).items()
                 if within(k, ("encoder",)) and k not in ("encoder.attention", "encoder.dropout")}
        differ = {k: v for k, v in given.items() if enc.get(k.split(".", 1)[1]) != v}
        if differ:   # the checkpoint's weights fix the architecture: say so instead of training another silently
            log.warning("--init %s fixes the encoder's shape: %s ignored (the checkpoint has %s); train without "
                        "--init to use them", init, ", ".join(f"{k}={v}" for k, v in differ.items()),
                        ", ".join(f"{k.split('.', 1)[1]}={enc.get(k.split('.', 1)[1])}" for k in differ))
        enc.update(attention=wanted, dropout=float(cfg["encoder.dropout"]))
        return SmilesTokenizer.from_dict(task["tokenizer"]), enc

    def build_training(self, cfg: Config, prepared: Path, stage: str, init: Path | None, seed: int) -> TrainingTask:
        max_len = int(cfg["features.max_len"])
        if stage == "pretrain":
            corpus = pd.read_csv(Path(prepared) / data.CORPUS)["smiles"].tolist()
            tok, enc = self._tokenizer_and_encoder(cfg, init, corpus)
            props, _ = features.rdkit_descriptors(corpus, names=PRETRAIN_PROPERTIES)
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
        y_mean, y_std = np.nanmean(y, 0), np.nanstd(y, 0) + 1e-8     # NaN: a target a molecule lacks
        meta: dict[str, Any] = {"kind": "regression", "tokenizer": tok.to_dict(), "encoder": enc, "targets": targets,
                                "y_mean": y_mean.tolist(), "y_std": y_std.tolist(), "max_len": max_len,
                                "smiles_column": cfg["data.smiles_column"], "hidden": int(cfg["head.hidden"]),
                                "dropout": float(cfg["head.dropout"]), "n_extra": 0,
                                "graph_dim": int(cfg["features.graph_dim"])}
        meta["elements"] = sorted({a.GetSymbol() for s in train.smiles for a in Chem.MolFromSmiles(s).GetAtoms()})
        if cfg["features.descriptors"]:
            x, names = features.rdkit_descriptors(train.smiles.tolist())
            # chosen from the training molecules and the config seed only: every member gets the same set
            keep = features.select_by_importance(x, y, names, float(cfg["features.descriptor_importance"]),
                                                 int(cfg["seed"]))
            x = x[:, [names.index(n) for n in keep]]
            meta.update(n_extra=len(keep), descriptor_names=keep, descriptor_scaler=DescriptorScaler.fit(x).to_dict())
        model = self.build_model(meta)
        if init is not None:
            missing = load_weights(model, member_dirs(init)[0], strict=False)
            log.info("initialized from %s; %d tensors new (heads)", init, len(missing))
        split = {name: frame[frame.split == name] for name in ("train", "val")}
        examples = {name: featurize(part.smiles.tolist(), meta, y=(part[targets].to_numpy(np.float64) - y_mean) / y_std)
                    for name, part in split.items()}
        return TrainingTask(model, examples["train"], examples["val"], collate_regression, regression_loss, meta)

    def build_model(self, metadata: Mapping[str, Any]) -> MoleculeModel:
        vocab = len(metadata["tokenizer"]["vocab"])
        if metadata["kind"] == "pretrain":
            return MoleculeModel(vocab, metadata["encoder"], n_props=metadata["n_props"])
        return MoleculeModel(vocab, metadata["encoder"], n_targets=len(metadata["targets"]),
                             n_extra=metadata["n_extra"], hidden=metadata["hidden"], dropout=metadata["dropout"],
                             graph_dim=metadata.get("graph_dim", 0))

    def calibrate(self, cfg: Config, prepared: Path, members: list[LoadedModel]) -> dict[str, Any] | None:
        """head.forest: fit the descriptor forest on the training molecules and choose the blend weights on
        the validation molecules (see `stacking`)."""
        from domains.molecules import stacking
        from domains.molecules.inference import raw_descriptors
        meta = members[0].metadata["task"]
        frame = data.load_prepared(prepared)
        train, val = frame[frame.split == "train"], frame[frame.split == "val"]
        if not cfg["head.forest"] or not meta["n_extra"] or len(val) == 0:
            return None
        targets = meta["targets"]
        if frame[targets].isna().to_numpy().any():
            log.info("forest blend skipped: some molecules lack a target (the forest needs every target); the "
                     "ensemble predicts alone")
            return None
        inputs = {name: stacking.forest_inputs(raw_descriptors(part.smiles.tolist(), meta),
                                               [Chem.MolFromSmiles(s) for s in part.smiles])
                  for name, part in (("train", train), ("val", val))}
        forest = stacking.fit_forest(inputs["train"], train[targets].to_numpy(np.float64), int(cfg["seed"]))
        ensemble, _ = predict_smiles(members, val.smiles.tolist(), stacked=False)
        weights = stacking.choose_weights(val[targets].to_numpy(np.float64), ensemble,
                                          stacking.forest_predict(forest, inputs["val"]))
        log.info("forest blend (descriptors + Morgan counts), chosen on %d validation molecules: ensemble "
                 "weight %s", len(val), weights)
        return {"stack": {"weights": weights, "forest": None if all(w == 1.0 for w in weights) else forest}}

    # -- evaluation ----------------------------------------------------------------------------------
    def evaluate(self, cfg: Config, prepared: Path, members: list[LoadedModel]) -> tuple[list[dict], pd.DataFrame]:
        frame = data.load_prepared(prepared)
        targets = members[0].metadata["task"]["targets"]  # what the model predicts, whatever --set says now
        missing = [t for t in targets if t not in frame.columns]
        if missing:
            raise UserError(f"{prepared}: no target column(s) {missing} that the model was trained on; evaluate "
                            "with the prepared data of the same dataset")
        fit = frame[frame.split != "test"]   # baselines have no use for a validation set: give them all of it
        if not (frame.split == "test").any():
            how = ("mark some rows test in data.split_column" if cfg["data.split"] == "column" else
                   "give the splits file test rows" if cfg["data.split"] == "file" else
                   "use more molecules or other data.sizes")
            raise UserError(f"{prepared}: the test split is empty (data.split={cfg['data.split']}); {how}")
        test = frame[frame.split == "test"]
        mean, std = predict_smiles(members, test.smiles.tolist())
        preds = {"sciformer": mean}
        stack = (members[0].metadata.get("calibration") or {}).get("stack")
        if stack and any(w != 1.0 for w in stack["weights"]):  # ablation: what the forest blend adds
            preds["sciformer-ensemble-only"] = predict_smiles(members, test.smiles.tolist(), stacked=False)[0]
        preds.update(baselines_per_target(fit, test, targets, int(cfg["seed"])))
        y = test[targets].to_numpy(np.float64)
        split = data.split_label(cfg)
        dataset = cfg["data.dataset"] if cfg["data.dataset"] != "csv" else Path(cfg["data.path"]).stem
        known = ~np.isnan(y)      # each target is scored on the test molecules that have it
        rows = [r for method, p in preds.items() for k, t in enumerate(targets) if known[:, k].any()
                for r in metric_rows(f"regression-{t}", dataset, split, method,
                                     {name: fn(y[known[:, k], k], p[known[:, k], k])
                                      for name, fn in REGRESSION_METRICS.items()})]
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

    def smiles_column(self, metadata: Mapping[str, Any]) -> str:
        """The input's SMILES column: the training file's name unless the command gives data.smiles_column."""
        return self.command_settings("data").get("smiles_column") or metadata["smiles_column"]

    def reader(self, metadata: Mapping[str, Any]) -> TableReader:
        col = self.smiles_column(metadata)
        return TableReader(required=[col], text=[col],
                           fix=f"rename your SMILES column to {col!r} or name yours with --set data.smiles_column=...")

    def predict(self, members: list[LoadedModel], batch, out) -> Prediction:
        # the core applies --on-invalid to the rows without a prediction (predict_frame marks them)
        table = predict_frame(members, batch.data, batch.first, "mark", self.smiles_column(members[0].metadata["task"]))
        return Prediction(table=table, predicted=table["status"].isin(PREDICTED).to_numpy())

    def example_inputs(self, folder: Path) -> tuple[Path, Path, str]:
        good, bad = Path(folder) / "molecules.csv", Path(folder) / "no_smiles_column.csv"
        pd.DataFrame({"id": ["ethanol", "typo", "benzene"], "smiles": ["CCO", "C1CC(", "c1ccccc1"]}).to_csv(
            good, index=False)
        pd.DataFrame({"id": ["x"], "structure": ["CCO"]}).to_csv(bad, index=False)
        return good, bad, "missing column(s) ['smiles']"

    def bad_inputs(self, folder: Path) -> list[BadInput]:
        folder = Path(folder)
        cases = {
            "header_only": ("smiles\n", "no data rows", None),
            "extra_field_first_row": ("id,smiles\n1,CCO,extra\n2,CCC\n", "fields", None),
            "extra_field_mid_file": ("id,smiles\n1,CCO\n2,CCC,extra\n", "fields", None),
            "invalid_smiles": ("smiles\nC1CC(\n", "", "invalid_smiles"),
            "too_long": ("smiles\n" + "C" * 10_000 + "\n", "", "too_long"),
            "dummy_atom": ("smiles\nC*C\n", "", "dummy_atom"),
            "metal": ("smiles\n[Pt](Cl)(Cl)(N)N\n", "", "unsupported_element"),
            "salt": ("smiles\nCC(=O)[O-].[Na+]\n", "", "largest_fragment"),
            "empty_smiles": ("id,smiles\n1,\n", "", "empty"),
        }
        out = []
        for name, (text, message, status) in cases.items():
            (folder / f"{name}.csv").write_text(text)
            out.append(BadInput(name, folder / f"{name}.csv", message, status))
        return out

    def report_figures(self, predictions: pd.DataFrame, metrics: list[dict], out_dir: Path) -> list[Path]:
        from domains.molecules.report import parity_plot
        return parity_plot(predictions, metrics, out_dir)
