"""Audio in and out: the PCM format, WAV files, PortAudio devices and earcons.

Everything past this package speaks one format (`pcm`): ``SAMPLE_RATE`` (16 kHz) mono signed
16-bit little-endian PCM, cut into fixed frames of ``frame_ms`` (10, 20 or 30 ms) as ``bytes``.

Sources share one interface::

    source = MicrophoneSource(cfg.audio, on_error=report)   # microphone.py, or wav.WavSource(path)
    async for frame in source.frames():                     # bytes, frame_bytes(frame_ms) long
        ...
    await source.aclose()                                   # or close() outside the event loop

``frames()`` ends when a file is exhausted (its last partial frame is padded with silence) or
after ``close()``; a microphone never ends on its own: when its device fails or disappears the
error goes to ``on_error`` and the device is reopened with exponential backoff.

Sinks share one interface (`sink.Sink`)::

    finished = await sink.play(samples, sample_rate)   # int16 array or s16le bytes, any rate
    sink.stop()                                        # barge-in: the current play returns False
    sink.set_volume(0.5)
    await sink.aclose()                                # or close() outside the event loop

The modules: `pcm` (format, framing, conversions; light enough for every stage to import), `wav`
(WAV files, `WavSource`, `WavSink`), `devices` (PortAudio's device list and streams),
`microphone` (`MicrophoneSource`), `speaker` (`SpeakerSink`), `earcons` (the wake and error
sounds), `own_sound` (what the microphone hears of the assistant itself). This file imports none
of them, so importing one never loads the others' libraries.
"""
