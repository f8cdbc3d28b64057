"""``model.push_to_hub``: save_pretrained to a temporary folder, create the repo, upload the folder; never the
network here: a recording fake stands in for ``huggingface_hub.HfApi``."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

import zoo
from zoo.models.pretrained import DEFAULT_COMMIT_MESSAGE, HubUploadError

TINY_GCN = {"type": "encoder", "modality": "molecule_graph",
            "encoder": {"type": "gnn", "config": {"gnn_type": "gcn", "num_layers": 2, "hidden_size": 16}}}


class FakeApi:
    """Records create_repo / upload_folder calls and keeps a copy of each uploaded folder (the real one is a
    temporary folder, removed when push_to_hub returns)."""

    def __init__(self, store: Path, fail: dict[str, BaseException] | None = None) -> None:
        self.store, self.fail, self.calls = store, fail or {}, []

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))
        if "create_repo" in self.fail:
            raise self.fail["create_repo"]
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, **kwargs):
        self.calls.append(("upload_folder", kwargs["repo_id"], kwargs))
        if "upload_folder" in self.fail:
            raise self.fail["upload_folder"]
        folder = Path(kwargs["folder_path"])
        assert folder.is_dir()
        copy = self.store / kwargs["repo_id"].replace("/", "--")
        shutil.copytree(folder, copy)
        return {"commit_url": f"https://huggingface.co/{kwargs['repo_id']}/commit/abc", "copy": copy}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return zoo.build(TINY_GCN).eval()


def test_push_saves_creates_the_repo_and_uploads_a_folder_that_loads_back(model, tmp_path):
    api = FakeApi(tmp_path)
    info = model.push_to_hub("someone/tiny-gcn", token="hf_x", private=True, commit_message="first", api=api)
    (create, repo, create_kwargs), (upload, repo2, upload_kwargs) = api.calls
    assert (create, repo, upload, repo2) == ("create_repo", "someone/tiny-gcn", "upload_folder", "someone/tiny-gcn")
    assert create_kwargs == {"token": "hf_x", "private": True, "repo_type": "model", "exist_ok": True}
    assert upload_kwargs["commit_message"] == "first" and upload_kwargs["token"] == "hf_x"
    assert not Path(upload_kwargs["folder_path"]).exists()  # the temporary folder is gone
    uploaded = info["copy"]
    assert {"config.json", "model.safetensors", "README.md"} <= {p.name for p in uploaded.iterdir()}
    card = (uploaded / "README.md").read_text()
    assert "zoo.load('hf-hub:someone/tiny-gcn')" in card and "modalzoo-push-" not in card
    loaded = zoo.load(uploaded)
    smiles = ["CCO", "c1ccccc1O"]
    assert torch.equal(loaded.embed(smiles), model.embed(smiles))


def test_push_defaults_and_the_default_api(model, tmp_path, monkeypatch):
    made = []

    def hf_api():
        made.append(FakeApi(tmp_path))
        return made[-1]

    monkeypatch.setattr("huggingface_hub.HfApi", hf_api)
    model.push_to_hub("tiny-gcn")
    (_, _, create_kwargs), (_, _, upload_kwargs) = made[0].calls
    assert create_kwargs["private"] is False and create_kwargs["token"] is None and create_kwargs["exist_ok"]
    assert upload_kwargs["commit_message"] == DEFAULT_COMMIT_MESSAGE


@pytest.mark.parametrize("step", ["create_repo", "upload_folder"])
def test_hub_errors_say_what_to_do(model, tmp_path, step):
    from huggingface_hub.errors import HFValidationError, LocalTokenNotFoundError

    cause = {"create_repo": LocalTokenNotFoundError("Token is required but no token found"),
             "upload_folder": HFValidationError("Repo id must use alphanumeric chars")}[step]
    with pytest.raises(HubUploadError) as caught:
        model.push_to_hub("someone/tiny-gcn", api=FakeApi(tmp_path, fail={step: cause}))
    message = str(caught.value)
    assert "'someone/tiny-gcn'" in message and str(cause) in message
    assert "hf auth login" in message and "huggingface-cli login" in message and "repo id" in message
    assert caught.value.__cause__ is cause


def test_a_malformed_repo_id_fails_before_anything_is_saved_or_sent(model, tmp_path):
    api = FakeApi(tmp_path)
    for bad in ("", "a/b/c", "/"):
        with pytest.raises(ValueError, match="repo_id must be 'name' or 'org/name'"):
            model.push_to_hub(bad, api=api)
    assert api.calls == []


def test_a_bug_in_the_api_is_not_disguised_as_a_hub_error(model, tmp_path):
    with pytest.raises(ZeroDivisionError):
        model.push_to_hub("someone/x", api=FakeApi(tmp_path, fail={"create_repo": ZeroDivisionError()}))
