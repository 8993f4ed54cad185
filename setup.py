from setuptools import find_packages, setup

setup(
    name="resnet-batch-renorm",
    version="0.1.0",
    description="ResNet with Batch Renormalization in TensorFlow-1-style "
                "graph mode (tf.compat.v1 sessions).",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=find_packages(include=["resnet", "resnet.*",
                                    "batch_renorm", "batch_renorm.*"]),
    install_requires=[
        # Runs on the CPU as it is; the `gpu` extra adds the CUDA libraries.
        "tensorflow>=2.16",
        "numpy",
        "scikit-learn",          # the embedded `digits` dataset
        "tqdm",                  # progress bars
        "tensorboard",           # the `tensorboard --logdir DIR` README shows
        "tensorlayer>=2.2.5",    # dataset downloads
        # tensorlayer imports these without declaring them.
        "opencv-python-headless",
        "matplotlib",
    ],
    entry_points={"console_scripts": ["resnet-run=resnet.resnet_run:main"]},
    extras_require={
        "gpu": ["tensorflow[and-cuda]>=2.16"],
        "test": ["pytest", "pytest-xdist", "hypothesis"],
    },
)
