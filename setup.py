"""storybeam: news ingestion on Apache Beam (feeds, WARC archives -> clean articles and stories).

Also the packaging used for remote workers: ``--setup_file ./setup.py`` ships ``pipeline`` and
``transforms`` to Dataflow / Flink / Spark workers.
"""

from setuptools import find_packages, setup

INSTALL_REQUIRES = [
    "apache-beam>=2.60.0",
    "feedparser>=6.0.11",
    "trafilatura>=2.0.0",
    "lxml_html_clean>=0.4.0",
    "fsspec>=2024.6.0",
    "pyarrow>=16.0.0",
    "fastwarc>=0.15.0",
    "warcio>=1.7.4",
    "datasketch>=1.6.0",
    "numpy>=1.26",
    "pyyaml>=6.0",
    "charset-normalizer>=3.3.0",
    "lxml>=5.0",
    "brotli>=1.1.0",
    "scipy>=1.10",
    "wordfreq>=3.1",
    "PyStemmer>=2.2",
]

EXTRAS_REQUIRE = {
    "gcp": ["apache-beam[gcp]>=2.60.0", "gcsfs>=2024.6.0"],
    "aws": ["s3fs>=2024.6.0"],
    "test": [
        "apache-beam[gcp]>=2.60.0",
        "pytest>=8.0",
        "pytest-timeout>=2.3",
        "gcsfs>=2024.6.0",
        "s3fs>=2024.6.0",
        "gcp-storage-emulator>=2024.8.3",
        "moto[server]>=5.0.0",
        "ruff>=0.6.0",
        "cryptography>=42.0",
    ],
}

setup(
    name="storybeam",
    version="0.1.0",
    description="News ingestion pipeline on Apache Beam: feeds and archives to clean articles and stories",
    long_description=open("README.md", encoding="utf-8").read() if __import__("os").path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["pipeline", "pipeline.*", "transforms", "transforms.*"]),
    package_data={"": ["*.yaml"]},
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    entry_points={"console_scripts": ["storybeam=pipeline.main:main"]},
)
