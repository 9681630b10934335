"""Build hook: the wheel carries configs/ as captcha_stream/configs (the metadata is in setup.cfg).

configs/ stays at the top level of the repository, where the project's layout puts it; an installed
package finds the same files by name (`--config cpu`) in its own copy.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildWithConfigs(build_py):
    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / "captcha_stream" / "configs"
        target.mkdir(parents=True, exist_ok=True)
        for config in sorted(Path(__file__).resolve().parent.joinpath("configs").glob("*.yaml")):
            shutil.copyfile(config, target / config.name)


setup(cmdclass={"build_py": BuildWithConfigs})
