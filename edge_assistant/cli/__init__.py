"""`edge-assistant`: the command line. The only package that sees argparse.

Every command loads the config the same way (--config, else /etc/edge-assistant/..., else the
built-in defaults), and every expected failure ends with one line on stderr and exit status 1
(2 for usage errors), never a traceback. The commands build what they run through
`assembly.Assembly`, as the daemon does:

- parser.py: the commands and their arguments, as a table;
- text.py: `config check`, `prompt`, `ask`;
- speech.py: `devices`, `say`, `transcribe`, `listen`;
- daemon.py: `run`, `doctor`, `status`, `reload`, `mqtt unregister`;
- home.py, bench.py, model_commands.py: `home`, `bench`, `models`;
- common.py: the config, the exit statuses and the question, shared by all.
"""

from __future__ import annotations

import sys

from .. import journal
from ..models import ModelError
from ..config import ConfigError
from .common import EXIT_FAILURE, EXIT_NOT_ALLOWED, EXIT_NOT_RUNNING, CliError, setup_logging
from .parser import build_parser

__all__ = ["EXIT_FAILURE", "EXIT_NOT_ALLOWED", "EXIT_NOT_RUNNING", "CliError", "build_parser", "main",
           "setup_logging"]


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.log_level or ("info" if args.command == "run" else "warning"))
    from ..audio.devices import AudioDeviceError
    from ..audio.wav import AudioFormatError
    from ..thinking.chat import LlmError
    from ..mqtt import MqttError
    from ..thinking.prompt import PromptError
    from ..hearing.stt import SttError
    from ..tts import TtsError

    expected = (
        ConfigError, CliError, ModelError, LlmError, PromptError,
        TtsError, AudioDeviceError, AudioFormatError, SttError, MqttError,
    )
    try:
        return args.handler(args)
    except expected as error:
        print(journal.error_line(f"edge-assistant: {error}"), file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
