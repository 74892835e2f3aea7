import torch

from minirlhf.training import make_optimizer


def test_the_optimizer_takes_adamw_steps_as_written_in_the_paper():
    """Two steps of make_optimizer against AdamW written out by hand (Loshchilov & Hutter, with bias correction)."""
    torch.manual_seed(0)
    w = torch.randn(5, 3, requires_grad=True)
    grads = [torch.randn(5, 3), torch.randn(5, 3)]
    lr, wd, (b1, b2), eps = 1e-2, 0.1, (0.9, 0.95), 1e-8
    opt = make_optimizer([w], lr, weight_decay=wd)
    ref = w.detach().clone()
    m, v = torch.zeros_like(ref), torch.zeros_like(ref)
    for t, g in enumerate(grads, start=1):
        w.grad = g.clone()
        opt.step()
        ref = ref * (1 - lr * wd)                       # decoupled weight decay
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
        m_hat, v_hat = m / (1 - b1 ** t), v / (1 - b2 ** t)
        ref = ref - lr * m_hat / (v_hat.sqrt() + eps)
        torch.testing.assert_close(w.detach(), ref, atol=1e-6, rtol=1e-6)


def test_parameters_that_are_frozen_are_left_out():
    a, b = torch.zeros(2, requires_grad=True), torch.zeros(2, requires_grad=False)
    opt = make_optimizer([a, b], 1e-3)
    assert [p for g in opt.param_groups for p in g["params"]] == [a]
