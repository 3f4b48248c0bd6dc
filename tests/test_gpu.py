"""The CUDA paths: bf16 autocast + channels-last training, embedding on the GPU, faiss GPU when built.
Skipped on machines without a GPU (CI); run on a GPU machine with ``pytest -m gpu``."""
from __future__ import annotations

import numpy as np
import pytest
import torch

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


@pytest.mark.trains
def test_train_and_embed_on_cuda_match_cpu_embedding(digits_images):
    from selector.backbones import EncoderConfig
    from selector.embed import embed_array
    from selector.train import TrainConfig, train_encoder

    enc = train_encoder(digits_images, EncoderConfig("resnet-small", 1, 16), TrainConfig(epochs=2, batch_size=16),
                        "cuda")
    assert next(enc.parameters()).is_cuda
    gpu = embed_array(enc, digits_images, "cuda")
    cpu = embed_array(enc.cpu(), digits_images, "cpu")
    assert np.isfinite(gpu).all()
    # Same weights, two devices: cosine similarity of each pair of embeddings close to 1 (TF32/cuDNN).
    assert (np.sum(gpu * cpu, axis=1) > 0.999).all()


def test_faiss_gpu_kmeans_when_available():
    import faiss

    from selector.cluster import kmeans

    if not hasattr(faiss, "get_num_gpus") or faiss.get_num_gpus() == 0:
        pytest.skip("faiss CPU build installed (pip install 'selector[gpu]' for the GPU build)")
    x = np.random.default_rng(0).normal(size=(5000, 32)).astype(np.float32)
    c, assign, _ = kmeans(x, 20, seed=0, use_gpu=True)
    assert c.shape == (20, 32) and assign.shape == (5000,)


@pytest.mark.trains
def test_resume_on_cuda(tmp_path, digits_images):
    """A checkpoint written on the GPU resumes there (RNG states are loaded on the CPU)."""
    from selector.backbones import EncoderConfig
    from selector.checkpoint import read_checkpoint
    from selector.train import TrainConfig, train_encoder

    cfg, enc_cfg, ckpt = TrainConfig(epochs=2, batch_size=16), EncoderConfig("resnet-small", 1, 16), tmp_path / "e.pt"
    train_encoder(digits_images, enc_cfg, cfg, "cuda", checkpoint_path=ckpt, stop_after_steps=2)
    train_encoder(digits_images, enc_cfg, cfg, "cuda", checkpoint_path=ckpt)
    assert read_checkpoint(ckpt)["epochs_done"] == 2
