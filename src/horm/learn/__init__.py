"""Active learning: grow a Hessian store where the committee's TS searches are unsure.

``run_learning(LearnSettings(...))`` (``horm learn``) runs rounds of: TS searches over
training reactions (:mod:`horm.learn.pool`), committee scoring of the visited geometries
(:mod:`horm.learn.scoring`, :mod:`horm.learn.committee`), diverse selection of a label
budget (:mod:`horm.learn.selection`), labelling, warm-started fine-tuning
(:mod:`horm.learn.finetune`) and held-out evaluation (:mod:`horm.learn.evaluation`),
resumable at every stage (:mod:`horm.learn.state`), with a report (:mod:`horm.learn.report`).
"""

from horm.learn.config import LearnSettings
from horm.learn.loop import run_learning

__all__ = ["LearnSettings", "run_learning"]
