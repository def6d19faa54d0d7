"""The tools around the library: the ``gpunuma`` command, ``check``, snapshots and captured trees, the launch child.

None of them loads on the bind path: ``bind_to_gpu``/``bind_to_node`` import nothing from here.
"""
