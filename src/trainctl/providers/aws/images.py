"""Which machine image to launch: a current GPU Deep Learning AMI, or the user's own.

AWS publishes the newest Deep Learning AMIs as public SSM parameters; when that
lookup fails (parameter missing in the region, or not allowed), the newest
Amazon-owned image with the matching name is taken instead.
"""

from __future__ import annotations

from typing import Any

from ...errors import BadInput, NotFound
from .session import aws_errors, client_error, error_code

#: Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04): drivers, CUDA,
#: python3, the AWS CLI and the SSM agent.
DLAMI_PARAMETER = (
    "/aws/service/deeplearning/ami/{arch}/base-oss-nvidia-driver-gpu-ubuntu-22.04/latest/ami-id"
)
DLAMI_NAME = "Deep Learning*Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04)*"


def find_image(ec2: Any, ssm: Any, arch: str, image: str | None = None) -> dict[str, Any]:
    """The DescribeImages record of the image to launch.

    ``image`` may be an AMI id or an SSM parameter path (``/...``) that holds one;
    without it the current Deep Learning AMI for ``arch`` is used."""
    if image and image.startswith("/"):
        image_id = _parameter(ssm, image, tolerate=("ParameterNotFound",))
        if image_id is None:
            raise BadInput(f"SSM parameter {image} does not exist in this region")
    elif image:
        image_id = image
    else:
        tolerate = ("ParameterNotFound", "AccessDeniedException")
        image_id = _parameter(ssm, DLAMI_PARAMETER.format(arch=arch), tolerate=tolerate)
        if image_id is None:
            return _newest_dlami(ec2, arch)
    with aws_errors(f"look up image {image_id}"):
        try:
            images = ec2.describe_images(ImageIds=[image_id])["Images"]
        except client_error() as e:
            if not error_code(e).startswith("InvalidAMIID"):
                raise
            images = []
    if not images:
        raise BadInput(f"image {image_id} does not exist in this region")
    return images[0]


def _parameter(ssm: Any, name: str, *, tolerate: tuple[str, ...]) -> str | None:
    """The parameter's value, or None when reading it fails with a ``tolerate`` code."""
    with aws_errors(f"read SSM parameter {name}"):
        try:
            return ssm.get_parameter(Name=name)["Parameter"]["Value"]
        except client_error() as e:
            if error_code(e) in tolerate:
                return None
            raise


def _newest_dlami(ec2: Any, arch: str) -> dict[str, Any]:
    with aws_errors("search for the Deep Learning AMI"):
        images = ec2.describe_images(
            Owners=["amazon"],
            Filters=[
                {"Name": "name", "Values": [DLAMI_NAME]},
                {"Name": "architecture", "Values": [arch]},
                {"Name": "state", "Values": ["available"]},
            ],
        )["Images"]
    if not images:
        raise NotFound(
            f"no Deep Learning AMI for {arch} found in this region",
            hint="name an image with --image",
        )
    return max(images, key=lambda i: i.get("CreationDate", ""))
