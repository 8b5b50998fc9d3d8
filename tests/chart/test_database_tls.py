"""A Postgres that demands verified TLS: the CA bundle the operator names
(database.caBundle) is mounted read-only at /etc/centaur/database-ca in every pod that
reaches the database (the api, the dispatcher, the migrate Job), so DATABASE_URL can say
`sslmode=verify-full&sslrootcert=/etc/centaur/database-ca/<key>`; without one nothing is
mounted."""
import kubernetes_validate
import pytest
from helm_python import HelmError

from helm_render import containers, render

DATABASE_PODS = ["Deployment/centaur-centaur-api", "Deployment/centaur-centaur-dispatcher",
                 "Job/centaur-centaur-migrate"]
RDS_CA = {"database": {"caBundle": {"configMap": "rds-ca", "key": "global-bundle.pem"}}}


def database_ca_mounts(manifest):
    (container,) = containers(manifest)
    return [m for m in container.get("volumeMounts", []) if m["name"] == "database-ca"]


def test_a_named_ca_bundle_is_mounted_read_only_where_the_database_is_reached():
    rendered = render(RDS_CA)
    for key in DATABASE_PODS:
        (mount,) = database_ca_mounts(rendered[key])
        assert mount == {"name": "database-ca", "mountPath": "/etc/centaur/database-ca", "readOnly": True}, key
        (volume,) = [v for v in rendered[key]["spec"]["template"]["spec"]["volumes"] if v["name"] == "database-ca"]
        assert volume["configMap"] == {"name": "rds-ca",
                                       "items": [{"key": "global-bundle.pem", "path": "global-bundle.pem"}]}, key
        kubernetes_validate.validate(rendered[key], "1.30", strict=True)


def test_without_a_ca_bundle_nothing_is_mounted(default_render):
    for key in DATABASE_PODS:
        assert database_ca_mounts(default_render[key]) == [], key
        volumes = default_render[key]["spec"]["template"]["spec"].get("volumes", [])
        assert all(v["name"] != "database-ca" for v in volumes), key


def test_a_ca_bundle_key_must_be_a_file_name():
    with pytest.raises(HelmError):
        render({"database": {"caBundle": {"configMap": "rds-ca", "key": "../etc/passwd"}}})
