# -*- coding: utf-8 -*-
# Copyright: guardctl authors
# Apache License 2.0 (see LICENSE)

# The options every guardctl module takes, documented once.


class ModuleDocFragment(object):
    DOCUMENTATION = r'''
options:
  binary:
    description: The guardctl binary, a path or a name looked up on C(PATH).
    type: str
    default: guardctl
  store:
    description: The guardian store (C(--store)); guardctl's default when not given.
    type: str
notes:
  - Supports check mode.
'''
