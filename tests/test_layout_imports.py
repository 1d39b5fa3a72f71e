"""Architecture rules that a refactor could silently break."""
import subprocess
import sys

BLOCK_TORCH = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('torch', 'transformers', 'trl', 'peft', 'accelerate'):
            raise ImportError('blocked ' + name)
sys.meta_path.insert(0, Block())
import pkgutil, importlib, vtdata
for m in pkgutil.walk_packages(vtdata.__path__, 'vtdata.'):
    importlib.import_module(m.name)
from vt import cli
print(len(cli.app.registered_commands))
"""


def test_vtdata_and_cli_import_without_torch():
    out = subprocess.run([sys.executable, "-c", BLOCK_TORCH], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    # every command registers without torch, so `vt --help` works and stays fast
    from vt import cli
    assert int(out.stdout.strip()) == len(cli.COMMANDS)


def test_help_lists_every_command():
    """(`vt --help` stays quick because no command module imports torch: the test above.)"""
    out = subprocess.run([sys.executable, "-m", "vt", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    from vt import cli
    for name in cli.COMMANDS:
        assert name in out.stdout
