"""Optimal control: declarative problems (:mod:`.problem`), method objects (:mod:`.methods`), the
shared solve pipeline (:mod:`.solve`), baselines evaluated by simulation (:mod:`.baselines`,
:mod:`.evaluate`) and the two methods' implementations (:mod:`.collocation` with
:mod:`.structured_nlp`, :mod:`.adjoint`)."""
