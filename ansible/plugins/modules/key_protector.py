#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: guardctl authors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: key_protector
short_description: Make sure a set of guardians can (or cannot) unwrap a set of key protectors
description:
  - Grants (I(state=present)) or revokes (I(state=absent)) each guardian on every key protector
    in I(files), with C(guardctl kp grant) or C(guardctl kp revoke), all files in one batch per
    guardian.
  - A file is changed only when a guardian had to be added or removed; guardctl decides this from
    the key protector's contents (the certificates it names), never by comparing bytes.
  - In check mode guardctl runs with C(--dry-run) and reports, per file, what it would change.
  - The owner's private signing key must be in the store of the node the files are on.
version_added: 0.1.0
author: guardctl authors
options:
  files:
    description: Key protector files on the managed node.
    type: list
    elements: path
    required: true
  guardians:
    description: Names of guardians in the node's store.
    type: list
    elements: str
    default: []
  guardian_files:
    description:
      - Public guardian files (as C(guardctl guardian export --public) writes) of the guardians.
      - Unlike I(guardians), these need not be imported first, so check mode predicts a grant to
        a guardian that an earlier task would import.
    type: list
    elements: path
    default: []
  state:
    description: C(present) grants, C(absent) revokes.
    type: str
    choices: [present, absent]
    default: present
  backup:
    description: Keep the previous version of each changed file as a C(.bak) backup.
    type: bool
    default: true
  allow_expired:
    description: Accept expired guardian certificates.
    type: bool
    default: false
extends_documentation_fragment:
  - guardctl.guardctl.guardctl
'''

EXAMPLES = r'''
- name: Find the VMs' key protectors
  ansible.builtin.find:
    paths: /srv/vms
    patterns: '*.kp'
  register: kps

- name: Every other node may unwrap them
  guardctl.guardctl.key_protector:
    files: "{{ kps.files | map(attribute='path') | list }}"
    guardians: [node2, node3]
'''

RETURN = r'''
changed_files:
  description: The files that changed (or, in check mode, would change), sorted.
  returned: always
  type: list
  elements: str
outcomes:
  description: One entry per guardian and file, as guardctl reports it.
  returned: always
  type: list
  elements: dict
  contains:
    guardian: {description: The guardian name or public guardian file., type: str}
    file: {description: The key protector., type: str}
    changed: {description: Whether this guardian was (or would be) added or removed., type: bool}
'''

import json

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.guardctl.guardctl.plugins.module_utils.guardctl import (
    Guardctl, GuardctlError, guardctl_argument_spec)


def main():
    spec = guardctl_argument_spec()
    spec.update(
        files=dict(type='list', elements='path', required=True),
        guardians=dict(type='list', elements='str', default=[]),
        guardian_files=dict(type='list', elements='path', default=[]),
        state=dict(type='str', choices=['present', 'absent'], default='present'),
        backup=dict(type='bool', default=True),
        allow_expired=dict(type='bool', default=False),
    )
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    p = module.params
    g = Guardctl(module)
    verb = 'grant' if p['state'] == 'present' else 'revoke'
    targets = [('--guardian', n) for n in p['guardians']] + [('--guardian-file', f) for f in p['guardian_files']]
    outcomes, changed_files = [], set()
    if p['files']:
        for flag, target in targets:
            args = ['kp', verb] + p['files'] + [flag, target, '--yes']
            if not p['backup']:
                args.append('--no-backup')
            if p['allow_expired']:
                args.append('--allow-expired')
            try:
                _, doc = g.run(args)
            except GuardctlError as e:
                # A batch reports each file; keep what guardctl said about them.
                per_file = []
                try:
                    per_file = json.loads(e.stdout) if e.stdout.strip() else []
                except ValueError:
                    pass
                g.fail(e, outcomes=outcomes, files=per_file)
            for r in doc or []:
                outcomes.append(dict(guardian=target, file=r['file'], changed=bool(r.get('changed'))))
                if r.get('changed'):
                    changed_files.add(r['file'])
    module.exit_json(changed=bool(changed_files), changed_files=sorted(changed_files), outcomes=outcomes)


if __name__ == '__main__':
    main()
