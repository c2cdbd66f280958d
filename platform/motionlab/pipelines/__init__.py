"""Ray Data graphs that turn raw sources into tokenised, split, validated Parquet shards."""
