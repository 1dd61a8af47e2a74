#!/bin/sh
# One-shot job of the compose stack (service `minio-init`, image minio/mc): create the bucket of the DVC remote
# in MinIO. Idempotent: an existing bucket is kept as it is. The code location starts only after this succeeded.
set -eu

: "${FIC_S3_ENDPOINT:?FIC_S3_ENDPOINT is not set}"
: "${FIC_S3_BUCKET:?FIC_S3_BUCKET is not set}"
: "${FIC_S3_ACCESS_KEY:?FIC_S3_ACCESS_KEY is not set}"
: "${FIC_S3_SECRET_KEY:?FIC_S3_SECRET_KEY is not set}"

mc alias set fic "$FIC_S3_ENDPOINT" "$FIC_S3_ACCESS_KEY" "$FIC_S3_SECRET_KEY" >/dev/null
mc mb --ignore-existing "fic/$FIC_S3_BUCKET"
# The DVC remote is private: no anonymous access to the image set.
mc anonymous set none "fic/$FIC_S3_BUCKET"
echo "minio-init: bucket $FIC_S3_BUCKET is ready at $FIC_S3_ENDPOINT"
