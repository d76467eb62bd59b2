"""``dscope camera list | settings | save-pfs FILE | grab OUT.png`` (bench set-up, issue 7).

Talks to the camera directly (not through the daemon): stop the daemon first,
a camera can be opened by one process only.  ``--camera`` takes the daemon's
spec: ``emulated[:FOLDER]`` or ``basler[:SERIAL]`` (default ``basler``).
"""

from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser("camera", help="list cameras, read settings, save a .pfs, grab one frame")
    csub = p.add_subparsers(dest="camera_command", metavar="ACTION")

    def common(q):
        q.add_argument("--camera", default="basler", metavar="SPEC", help="emulated[:FOLDER] | basler[:SERIAL]")
        q.add_argument("--config", metavar="FILE", help="configuration file (default: the shipped one)")

    q = csub.add_parser("list", help="cameras pylon can see (add --emulated for the emulator's)")
    q.add_argument("--emulated", action="store_true", help="list pylon's emulated devices")
    q.add_argument("--config", metavar="FILE", help="configuration file (default: the shipped one)")
    q.set_defaults(func=cmd_list)
    q = csub.add_parser("settings", help="open the camera, apply the config, print the node values as JSON")
    common(q)
    q.set_defaults(func=cmd_settings)
    q = csub.add_parser("save-pfs", help="open the camera, apply the config, save the whole node map (.pfs)")
    common(q)
    q.add_argument("file", metavar="FILE")
    q.set_defaults(func=cmd_save_pfs)
    q = csub.add_parser("grab", help="one software-triggered frame, saved losslessly as PNG")
    common(q)
    q.add_argument("out", metavar="OUT.png")
    q.add_argument("--timeout", type=float, default=None, metavar="S", help="wait per attempt (default camera.grab_timeout_s)")
    q.set_defaults(func=cmd_grab)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _controller(args):
    from dscope.config import load_config
    from dscope.hardware.controller import create_controller

    cfg = load_config(args.config)
    cfg = cfg.model_copy(
        update={"camera": cfg.camera.model_copy(
            update={"reconnect": cfg.camera.reconnect.model_copy(update={"open_retry_on_start": False})}
        )}
    )
    ctl = create_controller(args.camera, cfg, on_frame=lambda f: None, on_fault=lambda e: None,
                            on_recovered=lambda s: None, on_focus=lambda d: None)
    ctl.start()  # raises camera_unavailable / config_invalid with a message
    return ctl


def cmd_list(args) -> int:
    from dscope.config import load_config
    from dscope.hardware.camera import enumerate_devices

    cfg = load_config(args.config)
    devs = enumerate_devices(emulated=True if args.emulated else None,
                             emulator_devices=cfg.camera.emulator.device_count if args.emulated else None)
    for d in devs:
        print(f"{d.serial}\t{d.model}\t{d.device_class}\t{d.friendly_name}")
    if not devs:
        print("no camera found")
        return 1
    return 0


def cmd_settings(args) -> int:
    ctl = _controller(args)
    try:
        print(json.dumps({"serial": ctl.serial, **ctl.status(), "settings": ctl.read_settings()}, indent=2,
                         default=str))
    finally:
        ctl.stop()
    return 0


def cmd_save_pfs(args) -> int:
    ctl = _controller(args)
    try:
        path = ctl.save_settings(args.file)
    finally:
        ctl.stop()
    print(f"OK saved the node map of camera {ctl.serial} to {path}")
    return 0


def cmd_grab(args) -> int:
    from dscope.hardware.base import save_frame_png

    ctl = _controller(args)
    try:
        frame = ctl.trigger(args.timeout)
    finally:
        ctl.stop()
    path = save_frame_png(frame, args.out)
    print(f"OK frame {frame.frame_id} of camera {frame.serial} ({frame.image.shape[1]}x{frame.image.shape[0]}, "
          f"focus {frame.focus_metric_name} {frame.focus_metric:.4g}) -> {path}")
    for w in frame.warnings:
        print(f"warning: {w}")
    return 0
