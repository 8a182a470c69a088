"""Checks the hand-written backward passes of model.py against finite
differences (float64), so the example trains what it claims to. Run by CI."""

import numpy as np

import model


def check(kind):
    rng = np.random.default_rng(1)
    params = {k: v.astype(np.float64) for k, v in model.init(kind, 3, hidden=7, image_shape=(1, 8, 8)).items()}
    x = rng.random((5, 1, 8, 8))
    y = rng.integers(0, 10, size=5)
    _, _, grads = model.loss_and_gradients(params, x, y)
    worst = 0.0
    for name, value in params.items():
        flat = value.reshape(-1)
        for index in rng.choice(flat.size, size=min(6, flat.size), replace=False):
            saved = flat[index]
            flat[index] = saved + 1e-6
            up, _, _ = model.loss_and_gradients(params, x, y)
            flat[index] = saved - 1e-6
            down, _, _ = model.loss_and_gradients(params, x, y)
            flat[index] = saved
            numeric = (up - down) / 2e-6
            analytic = grads[name].reshape(-1)[index]
            error = abs(numeric - analytic) / max(1e-6, abs(numeric) + abs(analytic))
            worst = max(worst, error)
            assert error < 1e-4, f"{kind} {name}[{index}]: numeric {numeric}, analytic {analytic}"
    print(f"{kind}: gradients match finite differences (worst relative error {worst:.1e})")


if __name__ == "__main__":
    check("mlp")
    check("cnn")
