"""Which input normalisation the EfficientNet-Lite0 weights expect, checked on real photos.

CIFAR-10 test images (the shared JPEG archive, the first ``--per-class`` of each class) go through
:class:`selector.backbones.PretrainedBackbone` (resize, normalisation, trunk, pooling) and the
weights' own ImageNet classifier; a prediction counts as right when it falls in the ImageNet classes
of the image's CIFAR class (airplane: airliner, warplane, ...; dog: the 118 dog breeds; deer has no
ImageNet class and is left out). Printed: top-1 and top-5 hit rates per input size for
``(x - 0.5) / 0.5`` (what the package uses) and ImageNet mean/std.

    python -m benchmarks.pretrained_check [--per-class 100] [--sizes 224 128 96]
"""
from __future__ import annotations

import click
import numpy as np
import torch

from benchmarks.common import help_text, list_option, nchw, run

NORMS = {"(x-0.5)/0.5": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
         "imagenet mean/std": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))}


def imagenet_classes_of_cifar(cats: list[str]) -> dict[int, set[int]]:
    """CIFAR-10 class id -> the ImageNet class ids that name it (deer: none, left out)."""
    def names(*ns):
        return {cats.index(n) for n in ns}

    return {
        0: names("airliner", "warplane", "airship", "wing", "space shuttle"),
        1: names("sports car", "convertible", "cab", "beach wagon", "racer", "limousine", "minivan", "jeep",
                 "Model T", "car wheel", "grille", "pickup"),
        2: set(range(7, 25)) | set(range(80, 101)) | set(range(127, 147)),  # birds
        3: set(range(281, 286)),  # domestic cats
        5: set(range(151, 269)),  # dog breeds
        6: {30, 31, 32},  # frogs
        7: names("sorrel"),
        8: names("container ship", "liner", "fireboat", "speedboat", "pirate", "submarine", "catamaran",
                 "lifeboat", "gondola", "yawl", "trimaran", "schooner", "aircraft carrier", "wreck"),
        9: names("trailer truck", "fire engine", "garbage truck", "moving van", "tow truck", "pickup",
                 "police van", "minivan", "tank"),
    }


def hit_rates(x_nchw: np.ndarray, y: np.ndarray, size: int, mean, std,
              classes: dict[int, set[int]]) -> tuple[float, float]:
    from selector.backbones import PretrainedBackbone, load_state, weights_path

    bb = PretrainedBackbone("efficientnet-lite0", size).eval()
    bb.mean.copy_(torch.tensor(mean).view(1, 3, 1, 1))
    bb.std.copy_(torch.tensor(std).view(1, 3, 1, 1))
    state = load_state(weights_path("efficientnet-lite0"), "efficientnet-lite0")
    t = torch.from_numpy(x_nchw).float() / 255
    with torch.no_grad():
        logits = torch.cat([bb(b) @ state["_fc.weight"].T + state["_fc.bias"] for b in t.split(200)])
    top5 = logits.topk(5).indices.numpy()
    keep = [i for i in range(len(y)) if int(y[i]) in classes]
    top1 = np.mean([top5[i, 0] in classes[int(y[i])] for i in keep])
    any5 = np.mean([bool(set(top5[i].tolist()) & classes[int(y[i])]) for i in keep])
    return float(top1), float(any5)


@click.command("pretrained_check", help=help_text(__doc__))
@click.option("--per-class", type=int, default=100, show_default=True)
@list_option("--sizes", type=int, default=(224, 128, 96), show_default=True)
def cli(per_class, sizes) -> None:
    from selector.eval.datasets import cifar10
    from torchvision.models import ResNet18_Weights

    cats = ResNet18_Weights.IMAGENET1K_V1.meta["categories"]
    classes = imagenet_classes_of_cifar(cats)
    x, y, _ = cifar10("test", n_per_class=per_class)
    x = nchw(x)
    print(f"CIFAR-10 test, {per_class} per class, 9 classes with ImageNet names: hits in the class's "
          "ImageNet classes")
    print("| size | normalisation | top-1 % | top-5 % |")
    print("| --- | --- | --- | --- |")
    for size in sizes:
        for name, (mean, std) in NORMS.items():
            t1, t5 = hit_rates(x, y, size, mean, std, classes)
            print(f"| {size} | {name} | {100 * t1:.1f} | {100 * t5:.1f} |")


def main(argv: list[str] | None = None):
    return run(cli, argv)


if __name__ == "__main__":
    main()
