"""Run inside Blender: import one asset file with Blender's own importer and print what a user would see, as JSON.

    blender -b --factory-startup --python tests/blender/import_asset.py -- FILE.glb|FILE.obj

Prints one line ``ASSET {...}``: per mesh object its world-space bounding box and top vertex (Blender is z-up),
and for each material whether Base Color is wired to an image texture, and its Metallic and Roughness.
"""

import json
import sys

import numpy

numpy.bool = bool  # Blender 3.4's glTF importer uses numpy.bool, which numpy 1.24+ removed

import bpy  # Blender's own module, after the fix above
from mathutils import Vector

path = sys.argv[sys.argv.index("--") + 1]
bpy.ops.object.select_all(action="SELECT")
bpy.ops.object.delete()  # the factory scene's cube, camera and light
if path.endswith((".glb", ".gltf")):
    bpy.ops.import_scene.gltf(filepath=path)
else:  # OBJ with the importer's defaults (forward -Z, up Y)
    bpy.ops.import_scene.obj(filepath=path)

objects = []
for obj in bpy.context.scene.objects:
    if obj.type != "MESH":
        continue
    corners = [obj.matrix_world @ Vector(c) for c in obj.bound_box]
    top = max((obj.matrix_world @ v.co for v in obj.data.vertices), key=lambda p: p.z)
    materials = []
    for slot in obj.material_slots:
        nodes = slot.material.node_tree.nodes
        bsdf = next(n for n in nodes if n.type == "BSDF_PRINCIPLED")
        links = bsdf.inputs["Base Color"].links
        materials.append({
            "base_color_image": bool(links) and links[0].from_node.type == "TEX_IMAGE"
            and links[0].from_node.image is not None,
            "metallic": bsdf.inputs["Metallic"].default_value,
            "metallic_linked": bool(bsdf.inputs["Metallic"].links),
            "roughness": bsdf.inputs["Roughness"].default_value,
        })
    objects.append({
        "name": obj.name,
        "min": [min(c[i] for c in corners) for i in range(3)],
        "max": [max(c[i] for c in corners) for i in range(3)],
        "top": list(top),
        "vertices": len(obj.data.vertices),
        "materials": materials,
    })
print("ASSET " + json.dumps({"objects": objects}))
