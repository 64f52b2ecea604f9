from pathlib import Path

from unitrans import __version__
from unitrans.cli import main


def test_version(capsys):
    assert main(["--version"]) == 0
    assert __version__ in capsys.readouterr().out


def test_unknown_command_is_a_usage_error(capsys):
    assert main(["no-such-command"]) == 2


def test_ctrl_c_is_one_line_and_exit_130(monkeypatch, capsys, tmp_path):
    import unitrans.commands.evaluate as command

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(command, "evaluate_files", interrupted)
    assert main(["evaluate", "--pred", str(tmp_path / "p.txt")]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("unitrans: interrupted")
    assert "Traceback" not in "\n".join(err)


CHILD = (
    "import signal, sys\n"
    "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
    "from unitrans.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def test_real_sigint_while_waiting_for_input(tmp_path):
    """A real Ctrl-C (SIGINT) while the command blocks on a FIFO: one message, exit 130."""
    import os
    import signal
    import subprocess
    import sys
    import time

    fifo = tmp_path / "pred.fifo"
    os.mkfifo(fifo)
    proc = subprocess.Popen(
        # SIGINT's default handler first: a test run from a background job inherits SIGINT ignored.
        [sys.executable, "-c", CHILD, "evaluate", "--pred", str(fifo)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    wchan = Path(f"/proc/{proc.pid}/wchan")
    deadline = time.monotonic() + 60  # on a loaded machine the imports can take many seconds
    while time.monotonic() < deadline and proc.poll() is None:
        if wchan.is_file() and wchan.read_text() == "wait_for_partner":  # blocked opening the FIFO
            break
        time.sleep(0.1)
    else:
        time.sleep(3)  # no /proc (or it never blocked): the old guess
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert "unitrans: interrupted" in err


def test_environment_os_error_is_one_line(monkeypatch, capsys, tmp_path):
    import errno

    import unitrans.commands.evaluate as command

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "out.txt"))

    monkeypatch.setattr(command, "evaluate_files", disk_full)
    assert main(["evaluate", "--pred", str(tmp_path / "p.txt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"unitrans: error: {tmp_path / 'out.txt'}: no space left on the device"]


def test_tag_is_its_own_command_with_format_batching_and_quiet(capsys):
    import unitrans.commands.run as run_module

    assert main(["tag", "--help"]) == 0
    out = capsys.readouterr().out
    assert all(option in out for option in ("--model", "--format", "--batch-lines", "--quiet"))
    assert not hasattr(run_module, "tag_command")
