"""The functional-scaling-law surrogate [FSL25] (docs/models.md, section 6; docs/fsl.md).

* :mod:`.volterra`: the random-feature recursion as an exact discrete Volterra equation and its
  first-order intrinsic-time form;
* :mod:`.law`: the LLM loss-curve ansatz in intrinsic time with the loss-reduction term;
* :mod:`.data`: real LLM training-loss curves (shipped) and user CSVs, with their per-step schedules;
* :mod:`.fit`: fitting the ansatz (Huber loss on log-loss, post-warmup) and held-out prediction;
* :mod:`.surrogate_model`, :mod:`.optimise`: the fitted ansatz as a discrete-map model, and its
  optimal monotone schedule by :func:`opt_protocols.solve`;
* :mod:`.records`: fits, predictions and optima as HDF5 runs;
* :mod:`.cli`: ``opt-protocols fsl fit | predict | optimise``.
"""
