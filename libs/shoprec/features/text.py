"""Item description vectors and text clusters, learned with Spark ML.

Pipeline, fitted on one row per item (the catalog is small, thousands of rows):

    description -> RegexTokenizer (lower case, letters only, >= 2 letters)
                -> StopWordsRemover (English)
                -> Word2Vec  -> text_vector: the mean of the description's word vectors
                -> HashingTF -> IDF -> TF-IDF vector
    [L2-normalised Word2Vec | L2-normalised TF-IDF] -> KMeans -> text_cluster

Why the clusters use both: on Online Retail descriptions, KMeans over TF-IDF alone puts
most items into one catch-all cluster (descriptions share few words), while Word2Vec
alone groups by loose co-occurrence; the concatenation of the two unit vectors gives
clusters of similar size that read as product families (bags, Christmas decorations,
cake and baking, candles and lights, ...). Items whose description has no known word
keep a zero text vector and get no cluster (null), rather than a meaningless one.

Determinism: Word2Vec and KMeans depend on the order of their input rows, so the
training rows are sorted by item id and put into one partition before fitting; with the
seeds of ``features.text`` two fits on the same items give the same vectors.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.clustering import KMeans, KMeansModel
from pyspark.ml.feature import IDF, HashingTF, Normalizer, RegexTokenizer, StopWordsRemover, VectorAssembler, Word2Vec
from pyspark.ml.functions import vector_to_array
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from shoprec import columns as C
from shoprec.config import TextConfig

log = logging.getLogger(__name__)

_TEXT, _TOKENS, _WORDS = "_text", "_tokens", "_words"
_W2V, _TF, _TFIDF = "_w2v", "_tf", "_tfidf"
_W2V_UNIT, _TFIDF_UNIT, _CLUSTER_INPUT = "_w2v_unit", "_tfidf_unit", "_cluster_input"


@dataclass(frozen=True)
class TextModel:
    """A fitted description model: ``transform`` gives ``item_id, text_vector, text_cluster``."""

    pipeline: PipelineModel
    kmeans: KMeansModel | None
    vocabulary_size: int
    clusters: int

    def transform(self, items: DataFrame, col_item: str = C.ITEM_ID, col_description: str = C.DESCRIPTION) -> DataFrame:
        """Vectors and clusters of ``items`` (any items: the model never refits here).

        Returns ``item_id, text_vector array<double>, text_cluster int`` with one row per
        input row; ``text_cluster`` is null when no word of the description is known.
        """
        vectors = self.pipeline.transform(_text_input(items, col_item, col_description))
        known = _has_known_word()
        if self.kmeans is not None:
            vectors = self.kmeans.transform(vectors)
            cluster = F.when(known, F.col("_prediction").cast("int"))
        else:
            cluster = F.lit(None).cast("int")
        return vectors.select(
            F.col(col_item).alias(C.ITEM_ID),
            vector_to_array(F.col(_W2V), "float64").alias(C.TEXT_VECTOR),
            cluster.alias(C.TEXT_CLUSTER),
        )


def fit_text_model(
    items: DataFrame, tcfg: TextConfig, col_item: str = C.ITEM_ID, col_description: str = C.DESCRIPTION
) -> TextModel:
    """Fit Word2Vec, TF-IDF and KMeans on the descriptions of ``items`` (one row per item).

    ``items`` should hold only items known before ``as_of``: the vectors of every item
    depend on the corpus, so an item that first appears later must not shape them.
    """
    train = _text_input(items, col_item, col_description).orderBy(col_item).coalesce(1).persist()
    try:
        pipeline = _pipeline(tcfg).fit(train)
        vectors = pipeline.transform(train)
        vocabulary_size = _vocabulary_size(pipeline)
        usable = vectors.filter(_has_known_word()).persist()
        try:
            n_usable = usable.count()
            # KMeans fails (index out of bounds) when k exceeds the distinct points, which
            # small catalogs with repeated descriptions reach; equal word lists are equal points.
            k = min(tcfg.clusters, usable.select(F.array_sort(_WORDS)).distinct().count())
            kmeans = None
            if k >= 2:
                kmeans = KMeans(
                    k=k, seed=tcfg.seed, featuresCol=_CLUSTER_INPUT, predictionCol="_prediction", maxIter=50
                ).fit(usable)
            log.info("text model: %d words, %d items with a known word, %d clusters", vocabulary_size, n_usable, k)
        finally:
            usable.unpersist()
    finally:
        train.unpersist()
    return TextModel(pipeline, kmeans, vocabulary_size, k if kmeans is not None else 0)


def _has_known_word() -> Column:
    # Word2Vec averages the vectors of the words it knows and gives zeros when it knows
    # none; an average of real word vectors that is exactly zero does not happen.
    return F.exists(vector_to_array(F.col(_W2V)), lambda x: x != F.lit(0.0))


def _text_input(items: DataFrame, col_item: str, col_description: str) -> DataFrame:
    # The tokenizer fails on null text; an item without description is an empty one.
    return items.select(col_item, F.coalesce(F.col(col_description), F.lit("")).alias(_TEXT))


def _pipeline(tcfg: TextConfig) -> Pipeline:
    return Pipeline(
        stages=[
            RegexTokenizer(
                inputCol=_TEXT, outputCol=_TOKENS, pattern="[^a-z]+", gaps=True, toLowercase=True, minTokenLength=2
            ),
            StopWordsRemover(inputCol=_TOKENS, outputCol=_WORDS),
            Word2Vec(
                vectorSize=tcfg.vector_size,
                minCount=tcfg.min_count,
                windowSize=tcfg.window,
                maxIter=tcfg.max_iter,
                seed=tcfg.seed,
                numPartitions=1,
                inputCol=_WORDS,
                outputCol=_W2V,
            ),
            HashingTF(numFeatures=tcfg.tfidf_features, inputCol=_WORDS, outputCol=_TF),
            IDF(inputCol=_TF, outputCol=_TFIDF),
            Normalizer(p=2.0, inputCol=_W2V, outputCol=_W2V_UNIT),
            Normalizer(p=2.0, inputCol=_TFIDF, outputCol=_TFIDF_UNIT),
            VectorAssembler(inputCols=[_W2V_UNIT, _TFIDF_UNIT], outputCol=_CLUSTER_INPUT),
        ]
    )


def _vocabulary_size(pipeline: PipelineModel) -> int:
    w2v = next(s for s in pipeline.stages if hasattr(s, "getVectors"))
    return w2v.getVectors().count()
