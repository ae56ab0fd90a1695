"""The engine every stage runs on: DataRoot (paths), artifacts and manifests, StageRun and
StageResult (stage), the map/reduce shuffle, executors and progress."""
