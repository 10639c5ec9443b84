#!/bin/sh
# Regenerate the Python readers/builders of this folder from its .fbs schemas.
# Needs flatc (Debian/Ubuntu: apt-get install flatbuffers-compiler; these files were
# made with flatc 2.0.8). Run from anywhere; commit the .py files it rewrites.
set -eu
cd "$(dirname "$0")"
flatc --version
flatc --python --gen-object-api --gen-onefile -o . metadata_schema.fbs
flatc --python --gen-onefile -o . model_schema_subset.fbs
