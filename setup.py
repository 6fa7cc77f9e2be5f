"""shoprec: distributed recommendations for e-commerce on Spark, Delta, MLflow and Horovod."""

from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).parent


class BuildWithConf(build_py):
    """Ship conf/ inside the wheel (as shoprec/_conf) so spark-submit on a cluster finds it."""

    def run(self):
        super().run()
        target = Path(self.build_lib) / "shoprec" / "_conf"
        for src in (HERE / "conf").rglob("*.yml"):
            dest = target / src.relative_to(HERE / "conf")
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(src.read_bytes())


def _requirements() -> list[str]:
    # Top-level pins only; requirements/lock.txt pins the whole resolved set for the
    # local environment that scripts/bootstrap.sh builds.
    lines = (HERE / "requirements" / "base.in").read_text().splitlines()
    reqs = [ln.split("#")[0].strip() for ln in lines]
    build_only = {"setuptools", "wheel", "pytest", "pytest-timeout", "implicit"}
    return [r for r in reqs if r and r.split("<")[0].split(">")[0].split("=")[0] not in build_only]


setup(
    name="shoprec",
    version="0.1.0",
    description="Distributed recommendation platform for e-commerce (Spark, Delta, MLflow, Horovod)",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.11,<3.12",
    package_dir={"": "libs"},
    packages=find_packages(where="libs"),
    include_package_data=True,
    install_requires=_requirements(),
    extras_require={
        # Horovod is built from source by scripts/bootstrap.sh (see docs); declared here so
        # `pip install shoprec[horovod]` on a cluster image pulls the same version.
        "horovod": ["horovod==0.28.1"],
        "bench": ["implicit==0.7.2"],
        "test": ["pytest>=8", "pytest-timeout>=2.3"],
    },
    entry_points={"console_scripts": ["shoprec=shoprec.cli:main"]},
    cmdclass={"build_py": BuildWithConf},
)
