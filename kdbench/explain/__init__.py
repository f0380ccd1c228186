"""Where teachers and students look: Grad-CAM and saliency maps as pictures and as scores.

``attribution`` computes the maps through Captum, ``scores`` compares a student's map with its
teacher's (cosine, Spearman, and Ojha et al.'s "closer to the teacher than an independent student"
rate), ``images`` picks the test images, ``figures`` draws the grids, ``runner`` does it for a
suite's finished runs and ``tables`` renders the scores for ``kdbench explain`` and ``kdbench report``.
"""
