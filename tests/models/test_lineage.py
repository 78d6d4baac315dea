"""What a model has seen: the lineage its config carries from its start, through init_from, to the fit."""

from __future__ import annotations

import json

import lightning as L
import pytest

from faceage.models.lineage import CYDRAL, add_fit, describe, lineage_of, seen_with_ages, start_lineage

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_start_lineage_names_each_pretrained_network_once():
    assert start_lineage("cydral_resnet10", True, "cydral") == [CYDRAL]  # age and gender nets: one link
    sface = start_lineage("sface", True)
    assert len(sface) == 1 and sface[0]["age_labels"] is False
    assert seen_with_ages(sface) == []  # a face-recognition start has learnt no ages
    assert start_lineage("resnet18", False) == []
    assert start_lineage("resnet18", True)[0]["trained_on"] == ["ImageNet"]
    assert seen_with_ages(start_lineage("resnet18", False, "cydral")) == sorted(CYDRAL["trained_on"])


def test_a_fit_adds_its_datasets_and_a_config_without_lineage_names_its_source():
    lineage = add_fit(start_lineage("sface", True), ["utkface", "aaf", "utkface"])
    assert lineage[-1] == {"weights": "faceage fit", "trained_on": ["aaf", "utkface"], "age_labels": True}
    assert seen_with_ages(lineage) == ["aaf", "utkface"]
    assert lineage_of({"lineage": lineage}, "x") == lineage
    assert lineage_of({}, "old_model")[0]["weights"] == "faceage model old_model"
    assert "2. faceage fit: aaf, utkface" in describe(lineage)


def test_the_bundled_model_says_it_has_seen_fgnet_and_agedb():
    from faceage.models.files import read_directory_config
    from faceage.models.pretrained import bundled_model_dir

    seen = seen_with_ages(read_directory_config(bundled_model_dir())["lineage"])
    assert {"FG-NET", "AgeDB", "utkface", "aaf"} <= set(seen)


def test_a_fit_saves_its_lineage_and_init_from_carries_it_on(utkface_tree, tmp_path):
    from faceage.data.datamodule import AgeDataModule, SplitConfig
    from faceage.training.callbacks import ExportBestModel
    from faceage.training.module import AgeModule, BackboneConfig, HeadConfig
    from faceage.training.optim import OptimConfig

    def fit(folder, **kwargs):
        L.seed_everything(0)
        module = AgeModule(BackboneConfig(name="resnet18", image_size=32), HeadConfig(name="dldl"),
                           OptimConfig(lr=0.01, scheduler="none"), early_stopping_patience=0, **kwargs)
        data = AgeDataModule("utkface", str(utkface_tree), split=SplitConfig(seed=0), batch_size=16, num_workers=0,
                             split_file=str(tmp_path / "split.json"))
        trainer = L.Trainer(max_epochs=1, default_root_dir=str(folder), callbacks=[ExportBestModel()],
                            enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)
        trainer.fit(module, data)
        return json.loads((folder / "lightning_logs" / "version_0" / "model" / "config.json").read_text())

    first = fit(tmp_path / "a")
    assert first["lineage"] == [{"weights": "faceage fit", "trained_on": ["utkface"], "age_labels": True}]
    second = fit(tmp_path / "b", init_from=str(tmp_path / "a" / "lightning_logs" / "version_0" / "model"))
    assert second["lineage"] == first["lineage"] * 2  # the start's fit, then this one
