"""NLPs made of many copies of a few small functions, with derivatives assembled from the copies.

Direct collocation evaluates the same element function at every element. Letting
CasADi differentiate the whole expanded NLP symbolically costs seconds to minutes
(an SX Hessian with millions of instructions for the committee machine). Here the
NLP is declared as *blocks*: a small SX Function ``r = F(z)`` applied ``count``
times to inputs that are affine in the decision vector ``w`` and the parameters
``p``::

    Z_b = Aw_b w + Ap_b p                      (n_z x count, column e = input of copy e)
    g   = sum_b Gr_b vec(R_b) + Gw w + Gp p    (constraints, affine in the block outputs)
    f   = sum_b fr_b . vec(R_b) + fw . w + w' Q w / 2

A block may also read parameters ``q = Bq_b p`` that are not differentiated
(``r = F(z, q)``; e.g. model constants). The Jacobian of a copy, ``J(z)``, and
the Hessian of ``lam . F(z)`` are built once
per block (symbolically, small), ``map``-ed over the copies, and their nonzeros are
scattered into the NLP's Jacobian and Hessian by constant sparse matrices computed
once with SciPy. IPOPT then receives exact first and second derivatives through
``nlpsol``'s ``jac_g``, ``grad_f`` and ``hess_lag`` options.
"""
from __future__ import annotations

from dataclasses import dataclass

import casadi as ca
import numpy as np
import scipy.sparse as sp


@dataclass
class Block:
    """``count`` copies of ``fn(z, q)``: z (n_z) differentiated, q (n_q) a parameter; output r (n_r)."""

    fn: ca.Function
    count: int
    Aw: sp.spmatrix       # (n_z * count, n_w)
    Ap: sp.spmatrix       # (n_z * count, n_p)
    Bq: sp.spmatrix       # (n_q * count, n_p)
    Gr: sp.spmatrix       # (n_g, n_r * count)
    fr: np.ndarray        # (n_r * count,)

    @property
    def n_z(self) -> int:
        return self.fn.size1_in(0)

    @property
    def n_r(self) -> int:
        return self.fn.size1_out(0)


def _casadi_sparsity(rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]) -> ca.Sparsity:
    """Sparsity from (row, col) pairs already sorted column-major and unique."""
    colind = np.zeros(shape[1] + 1, dtype=np.int64)
    np.add.at(colind, cols + 1, 1)
    return ca.Sparsity(shape[0], shape[1], np.cumsum(colind).tolist(), rows.astype(np.int64).tolist())


def _dm(A: sp.spmatrix) -> ca.DM:
    """A SciPy sparse matrix as a CasADi DM, built from its CSC arrays (``ca.DM(scipy matrix)``
    converts entry by entry: seconds for the collocation matrices of a few hundred intervals)."""
    A = sp.csc_matrix(A)
    A.sort_indices()
    spars = ca.Sparsity(A.shape[0], A.shape[1], A.indptr.astype(np.int64).tolist(), A.indices.astype(np.int64).tolist())
    return ca.DM(spars, A.data.astype(float))


def _triple_product_terms(P: sp.spmatrix, Qm: sp.spmatrix):
    """Entries of P diag(v) Qm as (row, col, value index, coefficient) for a generic vector v."""
    P = sp.coo_matrix(P)
    Qm = sp.csr_matrix(Qm)
    rep = np.diff(Qm.indptr)[P.col]
    total = int(rep.sum())
    a = np.repeat(P.row, rep)
    idx = np.repeat(P.col, rep)
    pval = np.repeat(P.data, rep)
    starts = np.repeat(Qm.indptr[P.col], rep)
    offs = np.arange(total) - np.repeat(np.cumsum(rep) - rep, rep)
    pos = starts + offs
    return a, Qm.indices[pos], idx, pval * Qm.data[pos]


class _Scatter:
    """Maps concatenated block nonzeros (and constants) onto one sparse matrix's nonzeros."""

    def __init__(self, shape, terms, n_vals, const=None, triu=False):
        a = np.concatenate([t[0] for t in terms] + ([const[0]] if const else []))
        c = np.concatenate([t[1] for t in terms] + ([const[1]] if const else []))
        if triu:
            keep = a <= c
        else:
            keep = np.ones(a.size, dtype=bool)
        key = c.astype(np.int64) * shape[0] + a
        uniq, inverse = np.unique(key[keep], return_inverse=True)
        self.sparsity = _casadi_sparsity(uniq % shape[0], uniq // shape[0], shape)
        n_terms = sum(t[0].size for t in terms)
        kt = keep[:n_terms]
        idx = np.concatenate([t[2] for t in terms])[kt]
        coef = np.concatenate([t[3] for t in terms])[kt]
        self.M = _dm(sp.csc_matrix((coef, (inverse[:kt.sum()], idx)), shape=(uniq.size, n_vals)))
        self.const = None
        if const:
            kc = keep[n_terms:]
            self.const = ca.DM(np.bincount(inverse[kt.sum():], weights=const[2][kc], minlength=uniq.size))

    def __call__(self, vals: ca.MX, const_scale=1.0) -> ca.MX:
        nz = ca.mtimes(self.M, vals)
        if self.const is not None:
            nz = nz + const_scale * self.const
        return ca.sparsity_cast(nz, self.sparsity)


def _nonzeros(X: ca.MX) -> ca.MX:
    return ca.sparsity_cast(X, ca.Sparsity.dense(X.nnz(), 1))


def _pattern_indices(spars: ca.Sparsity, count: int, n_rows: int, n_cols: int):
    """Global (row, col) of every nonzero of a horizontally repeated block pattern, in storage order."""
    r, c = spars.get_triplet()
    r, c = np.asarray(r, dtype=np.int64), np.asarray(c, dtype=np.int64)
    e = np.repeat(np.arange(count), r.size)
    return np.tile(r, count) + e * n_rows, np.tile(c, count) + e * n_cols


def build_structured_nlp(w: ca.MX, p: ca.MX, blocks: list[Block], Gw: sp.spmatrix, Gp: sp.spmatrix,
                         fw: np.ndarray, Q: sp.spmatrix | None):
    """(nlp dict, nlpsol options with exact assembled derivatives) for the block-structured NLP."""
    n_w = w.numel()
    n_g = Gw.shape[0]
    g = ca.mtimes(_dm(Gw), w) + ca.mtimes(_dm(Gp), p)
    f = ca.dot(ca.DM(fw), w)
    if Q is not None and Q.nnz:
        f = f + 0.5 * ca.dot(w, ca.mtimes(_dm(Q), w))
    grad = ca.DM(fw) + (ca.mtimes(_dm(Q), w) if Q is not None and Q.nnz else 0)
    jac_terms, hess_terms, jac_vals, hess_vals = [], [], [], []
    lam_f = ca.MX.sym("lam_f")
    lam_g = ca.MX.sym("lam_g", n_g)
    off_j = off_h = 0
    for b in blocks:
        zs = ca.SX.sym("z", b.n_z)
        qs = ca.SX.sym("q", b.fn.size1_in(1))
        rs = b.fn(zs, qs)
        # (no common-subexpression pass here: it cost several times the Hessian's build for few fewer
        # instructions; the block function itself is already CSE'd)
        J = ca.jacobian(rs, zs)
        ls = ca.SX.sym("l", b.n_r)
        H = ca.hessian(ca.dot(ls, rs), zs)[0]
        jf = ca.Function("jac_" + b.fn.name(), [zs, qs], [J])
        hf = ca.Function("hess_" + b.fn.name(), [zs, qs, ls], [H])
        vf = ca.Function("vjp_" + b.fn.name(), [zs, qs, ls], [ca.jtimes(rs, zs, ls, True)])
        Z = ca.reshape(ca.mtimes(_dm(b.Aw), w) + ca.mtimes(_dm(b.Ap), p),
                       b.n_z, b.count)
        Qp = ca.reshape(ca.mtimes(_dm(b.Bq), p), qs.numel(), b.count)
        R = b.fn.map(b.count)(Z, Qp)
        vecR = ca.vec(R)
        g = g + ca.mtimes(_dm(b.Gr), vecR)
        f = f + ca.dot(ca.DM(b.fr), vecR)
        Aw = sp.csr_matrix(b.Aw)
        # gradient of f: Aw' vec(J_e' fr_e), only for blocks that enter the objective
        if np.any(b.fr):
            grad = grad + ca.mtimes(_dm(Aw.T),
                                    ca.vec(vf.map(b.count)(Z, Qp, ca.DM(b.fr.reshape(b.count, b.n_r).T))))
        # Jacobian of g: Gr BD(J) Aw
        rows, cols = _pattern_indices(jf.sparsity_out(0), b.count, b.n_r, b.n_z)
        Gr = sp.csc_matrix(b.Gr)
        a, c, idx, coef = _triple_product_terms(Gr[:, rows], Aw[cols, :])
        jac_terms.append((a, c, idx + off_j, coef))
        jac_vals.append(_nonzeros(jf.map(b.count)(Z, Qp)))
        off_j += rows.size
        # Hessian of the Lagrangian: Aw' BD(H(lam_e)) Aw, lam_e = lam_f fr_e + Gr_e' lam_g
        rows, cols = _pattern_indices(hf.sparsity_out(0), b.count, b.n_z, b.n_z)
        AwT = sp.csc_matrix(Aw.T)
        a, c, idx, coef = _triple_product_terms(AwT[:, rows], Aw[cols, :])
        hess_terms.append((a, c, idx + off_h, coef))
        lam_b = lam_f * ca.DM(b.fr) + ca.mtimes(_dm(Gr.T), lam_g)
        hess_vals.append(_nonzeros(hf.map(b.count)(Z, Qp, ca.reshape(lam_b, b.n_r, b.count))))
        off_h += rows.size
    Gw = sp.coo_matrix(Gw)
    jac_scatter = _Scatter((n_g, n_w), jac_terms, off_j, const=(Gw.row, Gw.col, Gw.data))
    jac = jac_scatter(ca.vertcat(*jac_vals))
    Qc = sp.coo_matrix(Q) if Q is not None else sp.coo_matrix((n_w, n_w))
    hess_scatter = _Scatter((n_w, n_w), hess_terms, off_h, const=(Qc.row, Qc.col, Qc.data), triu=True)
    hess = hess_scatter(ca.vertcat(*hess_vals), const_scale=lam_f)
    jac_g = ca.Function("nlp_jac_g", [w, p], [g, jac], ["x", "p"], ["g", "jac_g_x"])
    grad_f = ca.Function("nlp_grad_f", [w, p], [f, grad], ["x", "p"], ["f", "grad_f_x"])
    hess_lag = ca.Function("nlp_hess_l", [w, p, lam_f, lam_g], [hess],
                           ["x", "p", "lam_f", "lam_g"], ["triu_hess_gamma_x_x"])
    nlp = {"x": w, "p": p, "f": f, "g": g}
    return nlp, {"jac_g": jac_g, "grad_f": grad_f, "hess_lag": hess_lag}
