"""Two small networks in NumPy, with PyTorch's tensor names and layouts:
an MLP with one hidden layer (`layers.0`, `layers.1`) and a CNN (two 3x3
convolutions with stride 2, global average pooling, a linear head:
`conv1`, `conv2`, `fc`). Forward and backward passes by hand."""

import numpy as np


def init(kind, seed, hidden=64, image_shape=(1, 28, 28), classes=10):
    """Uniform weights and biases in ±1/sqrt(fan_in), as PyTorch's Linear
    and Conv2d initialise them."""
    rng = np.random.default_rng(seed)

    def uniform(shape, fan_in):
        bound = np.sqrt(1.0 / fan_in)
        return rng.uniform(-bound, bound, size=shape).astype(np.float32)

    c, h, w = image_shape
    if kind == "mlp":
        inputs = c * h * w
        return {
            "layers.0.weight": uniform((hidden, inputs), inputs),
            "layers.0.bias": uniform((hidden,), inputs),
            "layers.1.weight": uniform((classes, hidden), hidden),
            "layers.1.bias": uniform((classes,), hidden),
        }
    if kind == "cnn":
        return {
            "conv1.weight": uniform((8, c, 3, 3), c * 9),
            "conv1.bias": uniform((8,), c * 9),
            "conv2.weight": uniform((16, 8, 3, 3), 8 * 9),
            "conv2.bias": uniform((16,), 8 * 9),
            "fc.weight": uniform((classes, 16), 16),
            "fc.bias": uniform((classes,), 16),
        }
    raise ValueError(f"unknown model {kind!r}; expected mlp or cnn")


def kind_of(params):
    """Which of the two networks `params` holds."""
    return "cnn" if "conv1.weight" in params else "mlp"


def _im2col(x):
    """3x3 patches with stride 2 and padding 1: [b*ho*wo, c*9]."""
    b, c, h, w = x.shape
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(2, 3))
    windows = windows[:, :, ::2, ::2]  # [b, c, ho, wo, 3, 3]
    ho, wo = windows.shape[2], windows.shape[3]
    cols = windows.transpose(0, 2, 3, 1, 4, 5).reshape(b * ho * wo, c * 9)
    return cols, (b, c, h, w, ho, wo)


def _col2im(dcols, dims):
    """The gradient of `_im2col`: patches added back into the image."""
    b, c, h, w, ho, wo = dims
    d = dcols.reshape(b, ho, wo, c, 3, 3)
    padded = np.zeros((b, c, h + 2, w + 2), dtype=dcols.dtype)
    for i in range(3):
        for j in range(3):
            padded[:, :, i : i + 2 * ho : 2, j : j + 2 * wo : 2] += d[:, :, :, :, i, j].transpose(0, 3, 1, 2)
    return padded[:, :, 1:-1, 1:-1]


def _conv(x, weight, bias):
    cols, dims = _im2col(x)
    out = cols @ weight.reshape(weight.shape[0], -1).T + bias
    b, _, _, _, ho, wo = dims
    return out.reshape(b, ho, wo, -1).transpose(0, 3, 1, 2), (cols, dims)


def _conv_backward(dout, weight, cache):
    cols, dims = cache
    flat = dout.transpose(0, 2, 3, 1).reshape(-1, weight.shape[0])
    dweight = (flat.T @ cols).reshape(weight.shape)
    dbias = flat.sum(axis=0)
    dx = _col2im(flat @ weight.reshape(weight.shape[0], -1), dims)
    return dx, dweight, dbias


def _softmax_cross_entropy(logits, labels):
    shifted = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(shifted)
    probs /= probs.sum(axis=1, keepdims=True)
    n = len(labels)
    loss = -np.log(probs[np.arange(n), labels] + 1e-12).mean()
    dlogits = probs
    dlogits[np.arange(n), labels] -= 1.0
    return loss, dlogits / n


def forward(params, x):
    """Logits for images `x` ([n, c, h, w]) and what the backward pass needs."""
    if kind_of(params) == "mlp":
        flat = x.reshape(len(x), -1)
        pre = flat @ params["layers.0.weight"].T + params["layers.0.bias"]
        hidden = np.maximum(pre, 0.0)
        logits = hidden @ params["layers.1.weight"].T + params["layers.1.bias"]
        return logits, (flat, pre, hidden)
    a1, c1 = _conv(x, params["conv1.weight"], params["conv1.bias"])
    r1 = np.maximum(a1, 0.0)
    a2, c2 = _conv(r1, params["conv2.weight"], params["conv2.bias"])
    r2 = np.maximum(a2, 0.0)
    pooled = r2.mean(axis=(2, 3))
    logits = pooled @ params["fc.weight"].T + params["fc.bias"]
    return logits, (a1, c1, a2, c2, r2.shape, pooled)


def loss_and_gradients(params, x, labels):
    """Mean cross-entropy over the batch, accuracy, and d loss / d params."""
    logits, cache = forward(params, x)
    loss, dlogits = _softmax_cross_entropy(logits, labels)
    accuracy = float((logits.argmax(axis=1) == labels).mean())
    grads = {}
    if kind_of(params) == "mlp":
        flat, pre, hidden = cache
        grads["layers.1.weight"] = dlogits.T @ hidden
        grads["layers.1.bias"] = dlogits.sum(axis=0)
        dpre = (dlogits @ params["layers.1.weight"]) * (pre > 0)
        grads["layers.0.weight"] = dpre.T @ flat
        grads["layers.0.bias"] = dpre.sum(axis=0)
        return loss, accuracy, grads
    a1, c1, a2, c2, r2_shape, pooled = cache
    grads["fc.weight"] = dlogits.T @ pooled
    grads["fc.bias"] = dlogits.sum(axis=0)
    dpooled = dlogits @ params["fc.weight"]
    area = r2_shape[2] * r2_shape[3]
    dr2 = np.broadcast_to(dpooled[:, :, None, None] / area, r2_shape)
    da2 = dr2 * (a2 > 0)
    dr1, grads["conv2.weight"], grads["conv2.bias"] = _conv_backward(da2, params["conv2.weight"], c2)
    da1 = dr1 * (a1 > 0)
    _, grads["conv1.weight"], grads["conv1.bias"] = _conv_backward(da1, params["conv1.weight"], c1)
    return loss, accuracy, grads
