"""The compiled part of courier: the CBOR reader's fast path (courier/_cbor2json.c).

Everything else is in pyproject.toml. The extension is optional: where it cannot be built,
courier decodes CBOR with cbor2 alone (slower, same results).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "courier._cbor2json",
            ["courier/_cbor2json.c"],
            optional=True,
            extra_compile_args=["-O2"],
        )
    ]
)
