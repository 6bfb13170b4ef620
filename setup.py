"""Installs the colorization pipeline: the `colorize` CLI and its packages."""
import setuptools

setuptools.setup(
    name="tfx-colorize",
    version="0.1.0",
    description="A TFX pipeline that learns to colorize black-and-white photographs "
    "(Deep Koalarization).",
    python_requires=">=3.10,<3.11",
    packages=setuptools.find_packages(
        include=["schemas*", "imaging*", "components*", "trainer*", "pipelines*", "cloud*", "lineage*", "serving*",
                 "cli*"]),
    package_data={"schemas": ["*.pbtxt"]},
    install_requires=[
        "tfx==1.16.0",
        "tensorflow-io==0.37.1",
        "apache-beam[gcp]",
        "google-cloud-storage",
        "dill",
        "click",
        "pillow",
        "tqdm",
    ],
    extras_require={
        "kfp": ["kfp==2.5.0", "kfp-pipeline-spec==0.2.2", "google-cloud-aiplatform"],
        "test": [
            "pytest",
            "pytest-timeout",
            "pytest-xdist",
            "scikit-image",
            "psutil",
            "gcp-storage-emulator",
            "ruff",
        ],
    },
    entry_points={"console_scripts": ["colorize=cli.main:main"]},
)
