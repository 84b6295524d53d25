"""The online side: reads a published model directory and answers recommendation calls.

Serving depends on `recsys` and on the model directory on disk, never on `training`.
"""

from serving.recommender import Recommendation, RecommendationList, Recommender

__all__ = ["Recommendation", "RecommendationList", "Recommender"]
