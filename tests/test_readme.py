"""README's Python examples (and docs/'s), run as written: what they
claim they give."""
import ast
import glob
import os
import re
import subprocess
import sys

from tests.conftest import ROOT, environment


def python_blocks():
    """The ```python blocks of README.md, then of docs/*.md."""
    blocks = []
    for path in [os.path.join(ROOT, "README.md"),
                 *sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))]:
        with open(path, encoding="utf-8") as f:
            blocks += re.findall(r"```python\n(.*?)```", f.read(), re.DOTALL)
    return blocks


def test_the_python_api_and_hook_examples_give_what_they_say(tmp_path):
    """The first example (69 steps on digits) evaluates near its training
    accuracy (0.97 against 0.98-0.99 on an AVX512_BF16 EPYC, float32 and
    bfloat16 alike; 0.95-0.97 over seeds 0-3: a margin for other CPUs'
    kernels), and the hook example that continues it logs r and test
    points within its run."""
    api, hooks = python_blocks()[0], next(
        block for block in python_blocks() if "class LogR" in block)
    script = (api + "print('RESULT', history[-1]['accuracy'], "
              "metrics['accuracy'])\n" + hooks +
              "print('POINTS', [point['step'] for point in "
              "evaluation.history])\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path,
                            capture_output=True, text=True, timeout=600,
                            env=environment())
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    train, test = map(float, next(line for line in lines
                                  if line.startswith("RESULT")).split()[1:])
    assert test >= 0.93 and abs(test - train) < 0.05, (train, test)
    # The ramp opened at step 17 (short_run_schedule(69)): r moves.
    r_lines = [line for line in lines if re.fullmatch(
        r"step (70|80|90): mean r \d\.\d{3}", line)]
    assert len(r_lines) == 3 and "mean r 1.000" not in " ".join(r_lines), lines
    assert ast.literal_eval(lines[-1].split(" ", 1)[1]) == [70, 80, 90]
    assert (tmp_path / "exported" / "saved_model.pb").exists()
